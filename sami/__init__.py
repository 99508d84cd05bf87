"""sami: align language models to your principles with SAMI (arXiv 2404.14313)."""

from sami.objective import contrastive_logprobs, sami_loss
from sami.pipeline import Pipeline
from sami.training import SAMIConfig, SAMITrainer

__version__ = "0.1.0"
__all__ = ["Pipeline", "SAMIConfig", "SAMITrainer", "contrastive_logprobs", "sami_loss", "__version__"]
