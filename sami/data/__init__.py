"""Query sets: built-in dialogue requests and posts, the paper's hub datasets, and user files."""

from sami.data.queries import (
    EmptyQuerySetError,
    Query,
    QueryColumnError,
    QueryError,
    QueryFileNotFoundError,
    QuerySourceError,
    UnknownQuerySpecError,
    UnknownSplitError,
    builtin_query_sets,
    first_human_turn,
    load_queries,
    query_specs,
    split_queries,
)

__all__ = [
    "EmptyQuerySetError",
    "Query",
    "QueryColumnError",
    "QueryError",
    "QueryFileNotFoundError",
    "QuerySourceError",
    "UnknownQuerySpecError",
    "UnknownSplitError",
    "builtin_query_sets",
    "first_human_turn",
    "load_queries",
    "query_specs",
    "split_queries",
]
