"""sami: align language models to your principles with SAMI (arXiv 2404.14313).

The top-level names are imported on first use, so ``import sami`` (and ``sami --help``) does not
load torch or transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "sami.pipeline",
    "SAMIConfig": "sami.training",
    "SAMITrainer": "sami.training",
    "contrastive_logprobs": "sami.objective",
    "sami_loss": "sami.objective",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sami' has no attribute {name!r}")
