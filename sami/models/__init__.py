from sami.models.embedded import DEFAULT_MODEL, EMBEDDED_MODELS, EmbeddedModelMissing
from sami.models.loading import load_for_training, load_model, load_tokenizer, resolve_model_path, training_placement

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModelMissing",
    "load_for_training",
    "load_model",
    "load_tokenizer",
    "resolve_model_path",
    "training_placement",
]
