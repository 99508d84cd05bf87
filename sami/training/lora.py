"""LoRA via peft: build the adapter from a :class:`SAMIConfig`, and merge it into a plain checkpoint.

A merged checkpoint is an ordinary Hugging Face folder (``config.json``, safetensors, tokenizer):
``AutoModelForCausalLM.from_pretrained`` loads it without peft, so generation and evaluation never
need to know the model was trained with LoRA. Merged weights are written in the precision the base
weights have during training (float32 master weights): a LoRA update at the paper's learning rate
is far below bfloat16's resolution and would round away in a bfloat16 merge.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from sami.errors import ConfigError

logger = logging.getLogger(__name__)

ADAPTER_SUBDIR = "adapter"


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def lora_config(args):
    """The ``peft.LoraConfig`` described by a :class:`SAMIConfig` (``lora_*`` fields)."""
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.target_modules,
        task_type="CAUSAL_LM",
    )


def add_lora(model, args_or_config):
    """Wrap ``model`` with a LoRA adapter (``get_peft_model``); a ``SAMIConfig`` or a ``peft`` config."""
    from peft import PeftConfig, get_peft_model

    config = args_or_config if isinstance(args_or_config, PeftConfig) else lora_config(args_or_config)
    model = get_peft_model(model, config)
    if getattr(args_or_config, "gradient_checkpointing", False):
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return model


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict of the base model with the adapter merged in, keyed as a plain checkpoint.

    Merges the adapter into the weights in place, copies them to CPU, and unmerges again (the
    training copy then differs from before by float rounding only).
    """
    base = model.get_base_model()
    model.merge_adapter()
    try:
        state = {}
        for key, value in base.state_dict().items():
            if ".lora_" in key or ".original_module." in key:
                continue  # adapter factors; a modules_to_save copy's frozen original
            key = key.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
            state[key] = value.detach().to("cpu", copy=True)
    finally:
        model.unmerge_adapter()
    return state


def save_merged(model, output_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write ``model`` (a ``PeftModel``) as a plain checkpoint with the adapter merged in.

    Returns:
        Path: ``output_dir``.
    """
    output_dir = Path(output_dir)
    base = model.get_base_model()
    base.save_pretrained(output_dir, state_dict=merged_state_dict(model))
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    return output_dir


def merge_lora_checkpoint(
    adapter_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    base_model: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Merge a saved adapter into its base model (loaded on CPU) and save a plain checkpoint.

    Used after sharded training (FSDP, DeepSpeed), where the live model holds only a shard.

    Args:
        adapter_dir: a folder written by ``PeftModel.save_pretrained``.
        output_dir: where the merged checkpoint goes (the tokenizer is copied when ``adapter_dir`` has one).
        base_model: the base weights' folder or hub id; default: the adapter's ``base_model_name_or_path``.
        dtype: precision of the merge and of the saved weights (float32: see the module docstring).

    Returns:
        Path: ``output_dir``.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = base_model or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    if not base_path:
        raise ConfigError(
            f"the adapter in {adapter_dir} does not name its base model; "
            "pass base_model= (the folder it was trained on)"
        )
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    output_dir = Path(output_dir)
    merged.save_pretrained(output_dir)
    if (Path(adapter_dir) / "tokenizer_config.json").exists():
        AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(output_dir)
    return output_dir
