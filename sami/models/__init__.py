"""Models: the embedded ones, loading a spec (with its ``options``), and what sami knows about architectures
(``capabilities``).

Names are imported on first use, so importing ``sami.models.embedded`` (as the CLI's argument
dataclasses do) does not load torch or transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ARCHITECTURES": "sami.models.capabilities",
    "DEFAULT_MODEL": "sami.models.embedded",
    "EMBEDDED_MODELS": "sami.models.embedded",
    "EmbeddedModelMissing": "sami.models.embedded",
    "ModelOptions": "sami.models.options",
    "QuantizationUnavailable": "sami.models.options",
    "UnsupportedArchitecture": "sami.models.capabilities",
    "load_for_training": "sami.models.loading",
    "load_model": "sami.models.loading",
    "load_tokenizer": "sami.models.loading",
    "resolve_model_path": "sami.models.loading",
    "training_placement": "sami.models.loading",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sami.models' has no attribute {name!r}")
