from sami.generation.engine import (
    BACKENDS,
    Completion,
    Generator,
    SamplingConfig,
    build_generator,
    encode_prompts,
    resolve_backend,
)
from sami.generation.filters import FilterConfig, FilterReport
from sami.generation.generate import (
    ContextTooLong,
    generate_dataset,
    generate_texts,
    kept_records,
    read_records,
)
from sami.generation.hf_backend import HFGenerator
from sami.generation.prompts import PromptTemplate, encode_segments, resolve_template

__all__ = [
    "BACKENDS",
    "Completion",
    "ContextTooLong",
    "FilterConfig",
    "FilterReport",
    "Generator",
    "HFGenerator",
    "PromptTemplate",
    "SamplingConfig",
    "build_generator",
    "encode_prompts",
    "encode_segments",
    "generate_dataset",
    "generate_texts",
    "kept_records",
    "read_records",
    "resolve_backend",
    "resolve_template",
]
