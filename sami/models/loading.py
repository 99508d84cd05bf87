"""Resolve a model spec to (model, tokenizer).

A spec is one of: the short name of an embedded model (``smollm2-135m``, ``gemma3-270m``), a
local checkpoint directory, a ``.gguf`` file, or a Hugging Face hub id. Besides the dtype and the
device, every loader takes :class:`~sami.models.options.ModelOptions` (revision, trust_remote_code,
attn_implementation, device_map, 4/8-bit loading).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sami.errors import ConfigError, MissingFileError
from sami.hub_access import require_hub
from sami.models.embedded import EMBEDDED_MODELS, cache_dir
from sami.models.options import ModelOptions

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
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device; use auto, cpu, cuda, cuda:1, mps ...") from None


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
        require_hub(spec, local="give a local checkpoint folder (one that save_pretrained wrote) instead")
        return spec  # a hub id the Hub serves (or, with HF_HUB_OFFLINE=1, the cache holds)
    raise ConfigError(
        f"unknown model spec {spec!r}; use an embedded name ({', '.join(EMBEDDED_MODELS)}), "
        "a checkpoint folder, a .gguf file or a hub id such as 'mistralai/Mistral-7B-v0.1'"
    )


def _options_kwargs(spec: str, options: ModelOptions) -> dict:
    """The ``from_pretrained`` arguments a tokenizer and a model of ``spec`` share: revision, remote code."""
    kwargs: dict = {}
    revision = options.revision_for(spec)
    if revision:
        kwargs["revision"] = revision
    elif options.revision:
        logger.info("sami: %s is a local model, loaded as it is; the revision %r applies to hub ids only",
                    spec, options.revision)
    if options.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def quantization_config(options: ModelOptions, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """The ``BitsAndBytesConfig`` of ``options`` (None without 4/8-bit loading); 4-bit computes in ``dtype``, as TRL."""
    if not options.quantization:
        return None
    if options.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_type=options.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=options.use_bnb_nested_quant,
    )


def pretrained_kwargs(spec: str, options: ModelOptions, dtype: torch.dtype, device: torch.device) -> dict:
    """Everything ``AutoModelForCausalLM.from_pretrained`` gets for ``spec``; a ``device_map`` key means that
    ``from_pretrained`` places the weights (4/8-bit weights go to ``device``, as TRL's ``get_kbit_device_map``)."""
    kwargs = {"dtype": dtype, **_options_kwargs(spec, options)}
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    if options.quantization:
        if device.type != "cuda":
            raise ConfigError(
                f"{options.flag()} puts bitsandbytes weights on a CUDA GPU, but this load targets {device}: drop "
                f"--device cpu / --use_cpu true, or drop {options.flag()}"
            )
        kwargs["quantization_config"] = quantization_config(options, dtype)
        kwargs["device_map"] = options.device_map or {"": str(device)}
    elif options.device_map:
        kwargs["device_map"] = options.device_map
    return kwargs


def load_tokenizer(spec: str, options: ModelOptions | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec, with a pad token (EOS when it has none)."""
    options = options or ModelOptions()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(spec), **_options_kwargs(spec, options))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str, *, dtype: str | torch.dtype = "auto", device: str = "auto", options: ModelOptions | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from any spec.

    Args:
        spec: embedded name, checkpoint folder, ``.gguf`` file or hub id.
        dtype: ``"auto"`` (bf16 on a capable GPU, fp32 otherwise), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        options: revision, trust_remote_code, attn_implementation, device_map, 4/8-bit loading
            (:class:`~sami.models.options.ModelOptions`); default: none of them.

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device`` (placed by ``options.device_map`` when given).
    """
    options = options or ModelOptions()
    options.check_quantization()
    path = resolve_model_path(spec)
    torch_device = resolve_device(device)
    kwargs = pretrained_kwargs(spec, options, resolve_dtype(dtype, torch_device), torch_device)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "device_map" not in kwargs:
        model.to(torch_device)
    model.eval()
    return model, load_tokenizer(spec, options)


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
    spec: str, args=None, *, dtype: str | torch.dtype = "float32", options: ModelOptions | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer for training, placed as :func:`training_placement` says.

    Without sharding this is :func:`load_model` on the process's device. Under FSDP or DeepSpeed ZeRO-3 the
    model stays off the accelerator (in CPU RAM, or, on the processes that receive their shards from the main
    one, built from its config without reading the checkpoint), and ``Trainer``/``accelerate`` shard it when
    they prepare it: a 70B model never sits whole in one GPU.

    With 4/8-bit loading the base weights are bitsandbytes weights on the process's GPU; with LoRA on
    (``args.use_lora``: QLoRA) the model goes through peft's ``prepare_model_for_kbit_training`` and the
    trainer then adds the adapter, which trains in float32 (without LoRA such a model can only be scored:
    :meth:`~sami.models.options.ModelOptions.check_training` refuses to train it). Checked before anything is
    read: bitsandbytes and a CUDA GPU are present, and the run is not sharded (FSDP/ZeRO-3) nor placed with
    ``device_map`` over several processes.

    Args:
        spec: embedded name, checkpoint folder, ``.gguf`` file or hub id.
        args: the ``SAMIConfig``/``TrainingArguments`` of the run (for ``use_cpu``, ``fsdp``, ``use_lora`` and
            ``gradient_checkpointing``), or None.
        dtype: as for :func:`load_model`; float32 master weights by default.
        options: as for :func:`load_model`.
    """
    from accelerate import PartialState

    options = options or ModelOptions()
    options.check_quantization()
    if args is not None:
        _ = args.device  # set up the process group as the Trainer will (use_cpu, backend) before reading the rank
    state = PartialState()
    placement = training_placement(args)
    if placement != "device" and (options.quantization or options.device_map):
        flag = options.flag() if options.quantization else "--device_map"
        raise ConfigError(
            f"{flag} does not combine with FSDP or DeepSpeed ZeRO-3, which shard the model themselves: drop {flag}, "
            "or launch without sharding (one process, or DDP)"
        )
    if options.device_map and state.num_processes > 1:
        raise ConfigError(
            f"--device_map {options.device_map} spreads one model over devices, but {state.num_processes} "
            "processes are launched, each training its own copy: drop --device_map, or run one process"
        )
    with state.local_main_process_first():  # one process per machine dequantises a GGUF or downloads
        path = resolve_model_path(spec)
    if placement == "device":
        model, tokenizer = load_model(
            spec, dtype=dtype, device="cpu" if getattr(args, "use_cpu", False) else "auto", options=options
        )
        if options.quantization and getattr(args, "use_lora", False):
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=bool(getattr(args, "gradient_checkpointing", False)),
                gradient_checkpointing_kwargs=getattr(args, "gradient_checkpointing_kwargs", None),
            )
        return model, tokenizer
    torch_dtype = resolve_dtype(dtype, state.device)
    kwargs = pretrained_kwargs(spec, options, torch_dtype, torch.device("cpu"))
    if placement == "empty":
        from accelerate import init_empty_weights

        logger.info("sami: FSDP cpu-RAM-efficient loading: process %d does not read %s; it receives its shards "
                    "from the main process", state.process_index, spec)
        config = AutoConfig.from_pretrained(path, **_options_kwargs(spec, options))
        # parameters on meta, buffers real: the non-persistent ones (rotary inv_freq) are not broadcast
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, **{k: v for k, v in kwargs.items() if k != "revision"})
        _empty_cpu_parameters(model)
    else:
        logger.info("sami: sharded training: %s stays in CPU RAM until the trainer shards it", spec)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.eval()
    return model, load_tokenizer(spec, options)
