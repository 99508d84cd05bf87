from sami.generation.filters import FilterConfig, FilterReport
from sami.generation.generate import (
    Completion,
    ContextTooLong,
    SamplingConfig,
    generate_dataset,
    generate_texts,
    kept_records,
    read_records,
)
from sami.generation.prompts import PromptTemplate, encode_segments, resolve_template

__all__ = [
    "Completion",
    "ContextTooLong",
    "FilterConfig",
    "FilterReport",
    "PromptTemplate",
    "SamplingConfig",
    "encode_segments",
    "generate_dataset",
    "generate_texts",
    "kept_records",
    "read_records",
    "resolve_template",
]
