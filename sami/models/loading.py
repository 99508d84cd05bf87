"""Resolve a model spec to (model, tokenizer).

A spec is one of: the short name of an embedded model (``smollm2-135m``, ``gemma3-270m``), a
local checkpoint directory, a ``.gguf`` file, or a Hugging Face hub id.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sami.errors import ConfigError, MissingFileError
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
        raise ConfigError(f"unknown dtype {dtype!r}; choose 'auto' or one of {sorted(DTYPES)}")
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
            raise MissingFileError(f"GGUF file {spec!r} not found; check the path")
        return str(_dequantised_checkpoint(path, path.stem))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise MissingFileError(
                f"{spec!r} is a folder without config.json, so not a Hugging Face checkpoint; "
                "point to the folder that save_pretrained wrote"
            )
        return str(path)
    if spec.count("/") == 1 and not path.exists() and not spec.startswith((".", "/")):
        return spec  # a hub id; from_pretrained reports if it cannot be reached
    raise ConfigError(
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


# ---------------------------------------------------------------------------------------------- training


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes", "on")


def training_placement(args=None) -> str:
    """Where this process loads a model that is about to be trained: ``"device"``, ``"cpu"`` or ``"empty"``.

    * ``"device"``: no sharding (one process, DDP, DeepSpeed ZeRO-1/2): the process's device, the CPU with
      ``args.use_cpu``.
    * ``"cpu"``: FSDP or DeepSpeed ZeRO-3. The model stays in CPU RAM and the Trainer's prepare step moves
      only this process's shard onto the accelerator, so no process holds the whole model there.
    * ``"empty"``: FSDP with ``fsdp_cpu_ram_efficient_loading``, on every process but the main one (global
      rank 0, the source of accelerate's broadcast). Nothing is read from disk: the model is built on the meta
      device and its parameters get CPU storage that is never written (``torch.empty``: no pages are
      committed), which accelerate's prepare moves back to meta before it broadcasts the main process's
      weights shard by shard. Not left on meta: accelerate maps the optimizer, which the Trainer builds
      before the prepare step, onto the sharded parameters by ``data_ptr()``, and that is 0 for every meta
      tensor, so the optimizer of a meta-loaded process would step the wrong parameters.

    FSDP is on when ``accelerate launch`` says so (``ACCELERATE_USE_FSDP``) or ``args.fsdp`` is set;
    cpu-RAM-efficient loading when ``FSDP_CPU_RAM_EFFICIENT_LOADING`` is true (set by ``accelerate launch``
    from ``fsdp_cpu_ram_efficient_loading``, or by ``TrainingArguments`` from ``fsdp_config``). ZeRO-3 is
    read from ``transformers`` (a ``deepspeed`` config in ``args``) or from ``accelerate launch``'s
    ``ACCELERATE_DEEPSPEED_ZERO_STAGE``.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    fsdp = _env_flag("ACCELERATE_USE_FSDP") or bool(getattr(args, "fsdp", None))
    zero3 = is_deepspeed_zero3_enabled() or (
        _env_flag("ACCELERATE_USE_DEEPSPEED") and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    )
    if not (fsdp or zero3):
        return "device"
    if fsdp and _env_flag("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return "empty"
    return "cpu"


def _empty_cpu_parameters(model: torch.nn.Module) -> None:
    """Give every meta parameter unwritten CPU storage (distinct ``data_ptr``s), keeping shared parameters shared."""
    replaced: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and param.device.type == "meta":
                if id(param) not in replaced:
                    empty = torch.empty_like(param, device="cpu")
                    replaced[id(param)] = torch.nn.Parameter(empty, requires_grad=param.requires_grad)
                module._parameters[name] = replaced[id(param)]
    model.tie_weights()  # init_empty_weights registered each parameter anew, which unties a tied head


def load_for_training(
    spec: str, args=None, *, dtype: str | torch.dtype = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer for training, placed as :func:`training_placement` says.

    Without sharding this is :func:`load_model` on the process's device. Under FSDP or DeepSpeed ZeRO-3 the
    model stays off the accelerator (in CPU RAM, or, on the processes that receive their shards from the main
    one, built from its config without reading the checkpoint), and ``Trainer``/``accelerate`` shard it when
    they prepare it: a 70B model never sits whole in one GPU.

    Args:
        spec: embedded name, checkpoint folder, ``.gguf`` file or hub id.
        args: the ``SAMIConfig``/``TrainingArguments`` of the run (for ``use_cpu`` and ``fsdp``), or None.
        dtype: as for :func:`load_model`; float32 master weights by default.
    """
    from accelerate import PartialState

    if args is not None:
        _ = args.device  # set up the process group as the Trainer will (use_cpu, backend) before reading the rank
    state = PartialState()
    with state.local_main_process_first():  # one process per machine dequantises a GGUF or downloads
        path = resolve_model_path(spec)
    placement = training_placement(args)
    if placement == "device":
        return load_model(spec, dtype=dtype, device="cpu" if getattr(args, "use_cpu", False) else "auto")
    torch_dtype = resolve_dtype(dtype, state.device)
    if placement == "empty":
        from accelerate import init_empty_weights

        logger.info("sami: FSDP cpu-RAM-efficient loading: process %d does not read %s; it receives its shards "
                    "from the main process", state.process_index, spec)
        # parameters on meta, buffers real: the non-persistent ones (rotary inv_freq) are not broadcast
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch_dtype)
        _empty_cpu_parameters(model)
    else:
        logger.info("sami: sharded training: %s stays in CPU RAM until the trainer shards it", spec)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    model.eval()
    tokenizer = load_tokenizer(spec) if spec in EMBEDDED_MODELS else AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
