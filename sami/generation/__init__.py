"""Generation: the ``Generator`` backends (hf, vllm), prompt templates, filters and resumable records.

Names are imported on first use, so the light parts (prompts, filters) load without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "sami.generation.engine": ("BACKENDS", "Completion", "Generator", "SamplingConfig", "build_generator",
                               "encode_prompts", "resolve_backend"),
    "sami.generation.filters": ("EVAL_FILTERS", "FilterConfig", "FilterReport"),
    "sami.generation.generate": ("ContextTooLong", "OtherSettingsError", "generate_dataset", "generate_texts",
                                 "kept_records"),
    "sami.generation.hf_backend": ("HFGenerator",),
    "sami.generation.prompts": ("PromptTemplate", "encode_segments", "resolve_template"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'sami.generation' has no attribute {name!r}")
