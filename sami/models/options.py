"""How a model spec is loaded besides its dtype and device: the ``from_pretrained`` options TRL users pass.

:class:`ModelOptions` carries ``revision``, ``trust_remote_code``, ``attn_implementation``, ``device_map``
and bitsandbytes 4/8-bit loading (QLoRA), with the names of TRL's ``ModelConfig``
(``load_in_4bit``, ``bnb_4bit_quant_type``, ``use_bnb_nested_quant``). :mod:`sami.models.loading` turns
them into ``from_pretrained`` arguments; the generators put :meth:`ModelOptions.identity` into the resume
key of the records they write. This module imports neither torch nor transformers until a check needs them.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, fields
from pathlib import Path

from sami.errors import ConfigError, SamiError
from sami.models.embedded import EMBEDDED_MODELS

QUANT_TYPES = ("nf4", "fp4")
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".gguf", ".yaml")


class QuantizationUnavailable(SamiError, RuntimeError):
    """4/8-bit loading was asked for where bitsandbytes or a CUDA GPU is missing."""


def is_hub_id(spec: str) -> bool:
    """``owner/name`` that is neither an embedded model nor a local path: a Hugging Face hub id."""
    path = Path(spec).expanduser()
    return (
        spec not in EMBEDDED_MODELS
        and spec.count("/") == 1
        and not spec.startswith((".", "/", "~"))
        and path.suffix not in DATA_SUFFIXES
        and not path.exists()
    )


def check_dtype(dtype: str | None, flag: str = "--dtype") -> None:
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise ConfigError(f"{flag} {dtype!r} is not a dtype; choose one of {', '.join(DTYPE_NAMES)}")


@dataclass(frozen=True)
class ModelOptions:
    """``from_pretrained`` options of a model spec (the defaults load it as sami always did).

    Args:
        revision: branch, tag or commit of a hub model. A local spec (folder, embedded model, .gguf) has no
            revisions: it is loaded as it is and the revision is left out of its resume key.
        trust_remote_code: run the modelling code a hub repository ships (only for repositories you trust).
        attn_implementation: ``eager``, ``sdpa``, ``flash_attention_2``, ... (transformers' choice when None).
        device_map: ``auto``, ``balanced``, ``sequential``, ``cpu``, ``cuda:1`` ...: let accelerate place the
            weights (one process only) instead of moving the whole model to the process's device.
        load_in_4bit / load_in_8bit: bitsandbytes weights (QLoRA when training: needs LoRA, bitsandbytes and a
            CUDA GPU).
        bnb_4bit_quant_type: ``nf4`` or ``fp4``.
        use_bnb_nested_quant: quantise the 4-bit quantisation constants too (double quantisation).
    """

    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    device_map: str | None = None
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    use_bnb_nested_quant: bool = False

    def __post_init__(self) -> None:
        if self.load_in_4bit and self.load_in_8bit:
            raise ConfigError("--load_in_4bit and --load_in_8bit exclude each other; choose one")
        if self.bnb_4bit_quant_type not in QUANT_TYPES:
            raise ConfigError(
                f"--bnb_4bit_quant_type {self.bnb_4bit_quant_type!r}: choose one of {', '.join(QUANT_TYPES)}"
            )

    @classmethod
    def from_kwargs(cls, kwargs: dict | str | None, flag: str) -> tuple[ModelOptions, str | None]:
        """Options and dtype from a ``{"revision": ..., "dtype": ...}`` mapping (or its JSON), as ``flag`` gave it."""
        if kwargs is None:
            return cls(), None
        if isinstance(kwargs, str):
            try:
                kwargs = json.loads(kwargs)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{flag} is not a JSON object ({error}); e.g. '{{\"revision\": \"main\"}}'") from None
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{flag} must be a mapping of loading options, got {type(kwargs).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - {*known, "dtype"})
        if unknown:
            raise ConfigError(f"{flag}: unknown key(s) {unknown}; valid keys: dtype, {', '.join(known)}")
        options = dict(kwargs)
        dtype = options.pop("dtype", None)
        check_dtype(dtype, f"{flag} dtype")
        return cls(**options), dtype

    @property
    def quantization(self) -> str | None:
        """``"4bit-nf4"``, ``"4bit-nf4-nested"``, ``"8bit"`` or None."""
        if self.load_in_8bit:
            return "8bit"
        if self.load_in_4bit:
            return f"4bit-{self.bnb_4bit_quant_type}" + ("-nested" if self.use_bnb_nested_quant else "")
        return None

    def flag(self) -> str:
        """The flag that asked for quantisation, for messages."""
        return "--load_in_8bit" if self.load_in_8bit else "--load_in_4bit"

    def revision_for(self, spec: str) -> str | None:
        """The revision to load ``spec`` at: None for a local spec, which has no revisions."""
        return self.revision if self.revision and is_hub_id(spec) else None

    def identity(self, spec: str | None = None) -> dict:
        """The options that change what ``spec`` computes, only where they differ from the defaults.

        Default options add nothing, so records generated before these options existed keep their resume key.
        """
        identity: dict = {}
        revision = self.revision if spec is None else self.revision_for(spec)
        if revision:
            identity["revision"] = revision
        if self.trust_remote_code:
            identity["trust_remote_code"] = True
        if self.attn_implementation:
            identity["attn_implementation"] = self.attn_implementation
        if self.quantization:
            identity["quantization"] = self.quantization
        return identity

    def check_training(self, use_lora: bool) -> None:
        """4/8-bit base weights are frozen: training them needs a LoRA adapter (QLoRA)."""
        if self.quantization and not use_lora:
            raise ConfigError(
                f"{self.flag()} freezes the base weights in bitsandbytes form, so only a LoRA adapter can train "
                "(QLoRA): add --use_lora true"
            )

    def check_quantization(self) -> None:
        """Raise :class:`QuantizationUnavailable` (with the fix) when 4/8-bit loading cannot work here."""
        if not self.quantization:
            return
        flag = self.flag()
        if importlib.util.find_spec("bitsandbytes") is None:
            raise QuantizationUnavailable(
                f"{flag} loads bitsandbytes weights, and bitsandbytes is not installed: `pip install bitsandbytes` "
                f"(on a machine with a CUDA GPU), or drop {flag}"
            )
        import torch

        if not torch.cuda.is_available():
            raise QuantizationUnavailable(
                f"{flag} needs a CUDA GPU (bitsandbytes 4/8-bit weights compute on CUDA) and none is visible: run on "
                f"a GPU machine, or drop {flag} (LoRA also trains on full-precision weights)"
            )
