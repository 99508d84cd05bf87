"""Resolve a model spec to (model, tokenizer).

A spec is one of: the short name of an embedded model (``smollm2-135m``, ``gemma3-270m``), a
local checkpoint directory, a ``.gguf`` file, or a Hugging Face hub id.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sami.models.embedded import EMBEDDED_MODELS, cache_dir

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"``: bfloat16 on a GPU that supports it, float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: this process's accelerator under ``accelerate launch`` (``cuda:<local rank>``), else the CPU."""
    if device == "auto":
        from accelerate import PartialState

        return PartialState().device
    return torch.device(device)


def _dequantised_checkpoint(gguf_file: Path, name: str) -> Path:
    """Dequantise a GGUF file once and cache it as a safetensors checkpoint; return its folder."""
    digest = hashlib.sha256(f"{gguf_file.resolve()}:{gguf_file.stat().st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "checkpoints" / f"{name}-{digest}"
    if (target / "config.json").exists():
        return target
    logger.info("dequantising %s once into %s", gguf_file.name, target)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a crash mid-save never leaves a half checkpoint behind
    return target


def resolve_model_path(spec: str) -> str:
    """A spec -> something ``from_pretrained`` loads: a local folder or a hub id."""
    if spec in EMBEDDED_MODELS:
        embedded = EMBEDDED_MODELS[spec]
        return str(_dequantised_checkpoint(embedded.gguf_path(), spec))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {spec!r} not found; check the path")
        return str(_dequantised_checkpoint(path, path.stem))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{spec!r} is a folder without config.json, so not a Hugging Face checkpoint; "
                "point to the folder that save_pretrained wrote"
            )
        return str(path)
    if spec.count("/") == 1 and not path.exists() and not spec.startswith((".", "/")):
        return spec  # a hub id; from_pretrained reports if it cannot be reached
    raise ValueError(
        f"unknown model spec {spec!r}; use an embedded name ({', '.join(EMBEDDED_MODELS)}), "
        "a checkpoint folder, a .gguf file or a hub id such as 'mistralai/Mistral-7B-v0.1'"
    )


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec, with a pad token (EOS when it has none)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str, *, dtype: str | torch.dtype = "auto", device: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from any spec.

    Args:
        spec: embedded name, checkpoint folder, ``.gguf`` file or hub id.
        dtype: ``"auto"`` (bf16 on a capable GPU, fp32 otherwise), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.
    """
    path = resolve_model_path(spec)
    torch_device = resolve_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, torch_device))
    model.to(torch_device).eval()
    tokenizer = load_tokenizer(spec) if spec in EMBEDDED_MODELS else AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
