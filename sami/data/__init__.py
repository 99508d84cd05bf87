"""Query sets: built-in dialogue requests and posts, the paper's hub datasets, and user files."""

from sami.data.common import Query, QueryError, QueryFileNotFoundError, QuerySourceError, QueryValueError
from sami.data.queries import builtin_query_sets, load_queries, query_specs, split_queries, task_of
from sami.data.sources.hh_rlhf import first_human_turn

__all__ = [
    "Query",
    "QueryError",
    "QueryFileNotFoundError",
    "QuerySourceError",
    "QueryValueError",
    "builtin_query_sets",
    "first_human_turn",
    "load_queries",
    "query_specs",
    "split_queries",
    "task_of",
]
