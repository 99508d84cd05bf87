from sami.models.embedded import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModelMissing
from sami.models.loading import load_model, load_tokenizer, resolve_model_path

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModelMissing", "load_model", "load_tokenizer", "resolve_model_path"]
