"""SAMI training: the config, the collator, the trainer (TRL-shaped, on transformers.Trainer)."""

from sami.training.collator import PromptTooLong, SAMICollator
from sami.training.config import SAMIConfig
from sami.training.dataset import SAMIDataset
from sami.training.lora import merge_lora_checkpoint, save_merged
from sami.training.trainer import SAMITrainer, evaluate_sami, train_sami

__all__ = [
    "PromptTooLong",
    "SAMICollator",
    "SAMIConfig",
    "SAMIDataset",
    "SAMITrainer",
    "evaluate_sami",
    "merge_lora_checkpoint",
    "save_merged",
    "train_sami",
]
