"""The generation interface: prompts as token ids in, completions out, whatever engine runs them.

A :class:`Generator` has one job: given prompt token ids and sampling settings, return one
:class:`Completion` (token ids, text, finish reason) per prompt, in order. Two backends implement
it: ``hf`` (``model.generate`` in this process, :mod:`sami.generation.hf_backend`) and ``vllm``
(an in-process ``vllm.LLM`` engine, :mod:`sami.generation.vllm_backend`). Both decode and finish
responses with :func:`finish_completion`, so the same tokens give the same record.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sami.errors import ConfigError

if TYPE_CHECKING:
    from sami.models.options import ModelOptions

BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; the defaults are the paper's (greedy, up to 350 new tokens).

    Args:
        max_new_tokens: response budget (paper: 350; 500 for llama3-70b; 800 with chain of thought).
        temperature: 0 means greedy decoding (paper); > 0 samples.
        top_p: nucleus mass when sampling (paper: 0.9).
        stop_strings: cut the response at the first of these (kept out of the response).
        batch_size: prompts per batch of the hf backend (vLLM schedules its own batches from larger calls).
        seed: seeds sampling; greedy decoding ignores it.
    """

    max_new_tokens: int = 350
    temperature: float = 0.0
    top_p: float = 0.9
    stop_strings: tuple[str, ...] = ()
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}, batch_size={self.batch_size}: set both to >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"temperature must be >= 0 and top_p in (0, 1]; got {self.temperature}, {self.top_p}")


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]  # the response's tokens, EOS excluded
    finish_reason: str  # "eos" | "stop" | "length"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


class Generator(Protocol):
    """What every generation backend provides."""

    backend: str
    tokenizer: object
    spec: str | None  # the model spec whose weights generate now

    @property
    def context_length(self) -> int | None: ...

    @property
    def shard(self) -> tuple[int, int, bool]:
        """(this process's data shard, number of shards, whether this process writes records)."""
        ...

    def identity(self) -> dict:
        """Everything besides the model and the sampling settings that determines the outputs: backend, dtype and
        the loading options that differ from the defaults (revision, trust_remote_code, attn_implementation,
        quantization; :meth:`sami.models.options.ModelOptions.identity`)."""
        ...

    def prompts_per_call(self, sampling: SamplingConfig) -> int:
        """How many prompts one :meth:`generate` call should get (records are written after each call)."""
        ...

    def load(self, spec: str) -> None:
        """Generate with ``spec`` from now on (the vllm backend swaps the weights into its running engine)."""
        ...

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig, seeds: Sequence[int] | None = None
    ) -> list[Completion]:
        """One completion per prompt (token ids), in order; ``seeds[i]`` seeds prompt i when sampling."""
        ...

    def release(self) -> None:
        """Free accelerator memory until the next :meth:`load` (between generation and training)."""
        ...


def finish_completion(tokens: Sequence[int], tokenizer, eos_ids: Sequence[int], sampling: SamplingConfig) -> Completion:
    """Cut generated tokens at the first EOS, decode them, and cut the text at the first stop string."""
    tokens = list(tokens)
    ends = [i for i, t in enumerate(tokens) if t in eos_ids]
    if ends:
        tokens, finish = tokens[: ends[0]], "eos"
    else:
        finish = "length" if len(tokens) >= sampling.max_new_tokens else "eos"
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    for stop in sampling.stop_strings:
        if stop in text:
            text, finish = text[: text.index(stop)], "stop"
    return Completion(text=text.strip(), token_ids=tuple(tokens), finish_reason=finish)


def eos_token_ids(generation_config, tokenizer) -> list[int]:
    """The ids that end a response: the generation config's EOS (a list for some models), else the tokenizer's."""
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def encode_prompts(tokenizer, prompts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    """Rendered prompts -> token ids, exactly as the training collator encodes a prompt segment."""
    return [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]


def prompt_seed(seed: int, query_id: str, index: int) -> int:
    """The sampling seed of constitution ``index`` of a query: it depends on the query, never on batching."""
    return int(hashlib.sha256(f"sami-sample:{seed}:{query_id}:{index}".encode()).hexdigest()[:15], 16)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str) -> str:
    """``auto``: ``vllm`` where it is installed, ``hf`` otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown generation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    return backend


def build_generator(
    spec: str,
    backend: str = "auto",
    *,
    dtype: str = "bfloat16",
    device: str = "auto",
    seed: int = 0,
    vllm_tensor_parallel_size: int = 1,
    vllm_gpu_memory_utilization: float = 0.9,
    vllm_enable_sleep_mode: bool = False,
    vllm_enforce_eager: bool = False,
    vllm_max_model_len: int | None = None,
    options: ModelOptions | None = None,
) -> Generator:
    """A generator of ``backend`` with ``spec`` loaded (an embedded name, a checkpoint folder, a .gguf or a hub id).

    ``options`` are the loading options of every model it loads (:class:`~sami.models.options.ModelOptions`).
    """
    backend = resolve_backend(backend)
    if backend == "vllm":
        from sami.generation.vllm_backend import VLLMGenerator

        return VLLMGenerator(
            spec,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=vllm_tensor_parallel_size,
            gpu_memory_utilization=vllm_gpu_memory_utilization,
            enable_sleep_mode=vllm_enable_sleep_mode,
            enforce_eager=vllm_enforce_eager,
            max_model_len=vllm_max_model_len,
            options=options,
        )
    from sami.generation.hf_backend import HFGenerator

    return HFGenerator(spec, dtype=dtype, device=device, options=options)
