"""Flat argument groups shared by the commands. Each field's ``help`` is what ``--help`` prints.

Names never clash with ``transformers.TrainingArguments`` (``sami run`` parses both), which is
why the seed of ``sami run`` is the trainer's ``--seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sami.errors import ConfigError
from sami.generation.engine import BACKENDS, Generator, SamplingConfig, build_generator
from sami.generation.filters import FilterConfig
from sami.generation.prompts import INSTRUCTIONS
from sami.launch import accelerate_config_names, resolve_accelerate_config
from sami.models.embedded import DEFAULT_MODEL
from sami.models.options import DTYPE_NAMES, QUANT_TYPES, ModelOptions, check_dtype, is_hub_id
from sami.principles.writer import ASPECTS

DEFAULT_GENERATION_DTYPE = "bfloat16"
"""Weights dtype while generating when neither --generation_dtype nor --dtype is given (fastest on GPU and CPU)."""
DEFAULT_TRAINING_DTYPE = "float32"
"""Weights dtype of the trained model when --dtype is not given: float32 master weights (docs/training.md)."""


@dataclass
class ModelLoadingArgs:
    """How a model is loaded: ``from_pretrained`` options, with the names of TRL's ``ModelConfig``.

    ``dtype`` is the weights dtype of the model; unset, training loads float32 (the optimiser's master weights:
    an update at lr 5e-7 rounds away in 16-bit weights) and generation ``--generation_dtype`` (bfloat16).
    """

    model_revision: str | None = field(
        default=None,
        metadata={"help": "Branch, tag or commit of a hub model (its local checkpoints are loaded as they are)."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the modelling code a hub repository ships (only for ones you trust)."}
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel: eager, sdpa, flash_attention_2, ... (default: transformers' choice; "
                  "the hf backend and training, not vLLM)."},
    )
    dtype: str | None = field(
        default=None,
        metadata={"help": f"Weights dtype: {', '.join(DTYPE_NAMES)} (auto: bfloat16 on a GPU that has it, else "
                  "float32). Default: float32 to train (master weights), --generation_dtype to generate.",
                  "choices": [*DTYPE_NAMES]},
    )
    device_map: str | None = field(
        default=None,
        metadata={"help": "Let accelerate place the weights (auto, balanced, sequential, cuda:1 ...) instead of "
                  "moving the model to the process's device; one process only."},
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "bitsandbytes 4-bit weights (needs bitsandbytes and a CUDA GPU; training: QLoRA, with "
                  "--use_lora true)."},
    )
    load_in_8bit: bool = field(
        default=False,
        metadata={"help": "bitsandbytes 8-bit weights (needs bitsandbytes and a CUDA GPU; training: with --use_lora true)."},
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata={"help": "4-bit quantisation type.", "choices": [*QUANT_TYPES]}
    )
    use_bnb_nested_quant: bool = field(
        default=False, metadata={"help": "4-bit: quantise the quantisation constants too (double quantisation)."}
    )

    def __post_init__(self) -> None:
        check_dtype(self.dtype)
        self.options().check_quantization()  # no bitsandbytes or no GPU: refused before any work

    def options(self) -> ModelOptions:
        """The loading options besides the dtype, for :mod:`sami.models.loading` and the generators."""
        return ModelOptions(
            revision=self.model_revision,
            trust_remote_code=self.trust_remote_code,
            attn_implementation=self.attn_implementation,
            device_map=self.device_map,
            load_in_4bit=self.load_in_4bit,
            load_in_8bit=self.load_in_8bit,
            bnb_4bit_quant_type=self.bnb_4bit_quant_type,
            use_bnb_nested_quant=self.use_bnb_nested_quant,
        )

    @property
    def training_dtype(self) -> str:
        """The dtype the trained model is loaded in: ``--dtype``, else float32."""
        return self.dtype or DEFAULT_TRAINING_DTYPE


@dataclass
class _TargetModel:
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Target model: embedded name (smollm2-135m, gemma3-270m), checkpoint folder, .gguf or hub id."},
    )


@dataclass
class ModelArgs(ModelLoadingArgs, _TargetModel):
    """The target model (``--model``, listed first) and how it is loaded (:class:`ModelLoadingArgs`)."""

    def __post_init__(self) -> None:
        if self.model_revision and not is_hub_id(self.model):
            raise ConfigError(
                f"--model_revision {self.model_revision} picks a version of a hub model, but --model {self.model} is "
                "local (an embedded model, a folder or a .gguf file): its files are the version; drop --model_revision"
            )
        super().__post_init__()


@dataclass
class PrincipleFileArgs:
    principles: str | None = field(
        default=None,
        metadata={"help": "Principle file (YAML/JSON) or built-in name (hh, tldr, tldr_diverse, verifiable); "
                  "leave empty to have --writer write them from --task_description."},
    )


@dataclass
class PrincipleArgs(PrincipleFileArgs):
    """A principle file, or the principle writer that makes one: a local model, or a model behind an
    OpenAI-compatible endpoint (``--writer api --writer_model NAME``)."""

    task_description: str | None = field(default=None, metadata={"help": "What the principles are for (the writer's input)."})
    num_principles: int = field(default=2, metadata={"help": "How many principles the writer writes."})
    writer: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Principle writer: a local model spec, or 'api' for --writer_model on an OpenAI-compatible "
                  "endpoint (paper: claude-opus, mistral-7b-instruct)."},
    )
    writer_temperature: float = field(default=0.8, metadata={"help": "Writer sampling temperature (retries need > 0)."})
    writer_max_rounds: int = field(default=10, metadata={"help": "Batches of 8 samples before the writer gives up."})
    writer_aspects: list[str] = field(
        default_factory=lambda: list(ASPECTS),
        metadata={"help": "Aspects of a response the writer is steered to, one per principle, in turn."},
    )
    writer_model: str | None = field(
        default=None, metadata={"help": "--writer api: the endpoint's model name (claude-opus-4-1, gpt-4o); required."}
    )
    writer_base_url: str = field(
        default="https://api.openai.com/v1", metadata={"help": "--writer api: the OpenAI-compatible endpoint."}
    )
    writer_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "--writer api: environment variable holding the API key ('' for none); the key is never "
                  "written."},
    )
    writer_api_version: str | None = field(
        default=None, metadata={"help": "--writer api, Azure OpenAI: the api-version the endpoint needs."}
    )
    writer_max_tokens: int = field(default=256, metadata={"help": "--writer api: completion budget per answer."})
    writer_timeout: float = field(default=60.0, metadata={"help": "--writer api: seconds per request."})
    writer_retries: int = field(default=4, metadata={"help": "--writer api: retries on 429, 5xx and timeouts."})
    writer_send_seed: bool = field(
        default=True,
        metadata={"help": "--writer api: send each sample's seed as the request's 'seed' field (false for endpoints "
                  "that reject it, such as Mistral's API)."},
    )
    writer_cache: str | None = field(
        default=None, metadata={"help": "--writer api: answer cache folder (default: none; reruns with it are free)."}
    )
    writer_model_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Local writer: loading options as JSON (a mapping in YAML), the keys of the model options: "
                  "dtype (default bfloat16), revision, trust_remote_code, attn_implementation, device_map, "
                  "load_in_4bit, load_in_8bit, bnb_4bit_quant_type, use_bnb_nested_quant."},
    )

    def writer_loading(self) -> tuple[ModelOptions, str | None]:
        """The local writer's loading options and dtype (None: the writer's default) from ``--writer_model_kwargs``."""
        return ModelOptions.from_kwargs(self.writer_model_kwargs, "--writer_model_kwargs")

    def __post_init__(self) -> None:
        if self.writer == "api" and not self.writer_model:
            raise ConfigError("--writer api needs --writer_model: the model name the endpoint serves (e.g. gpt-4o)")
        if self.writer != "api" and self.writer_model:
            raise ConfigError(
                f"--writer_model {self.writer_model} is for --writer api; a local writer is named by --writer itself "
                f"(now {self.writer!r}): pass --writer api, or drop --writer_model"
            )
        if self.writer == "api" and self.writer_model_kwargs:
            raise ConfigError("--writer_model_kwargs loads a local writer; the API writer's model is the endpoint's: "
                              "drop --writer_model_kwargs, or name a local model with --writer")
        options, _ = self.writer_loading()
        options.check_quantization()


@dataclass
class QueryArgs:
    queries: str = field(
        default="dialogue",
        metadata={"help": "Query set: dialogue, summarisation, hh-rlhf:helpful-base, hh-rlhf:harmless-base, tldr, "
                  "or a .jsonl/.json/.csv file."},
    )
    query_column: str | None = field(default=None, metadata={"help": "Column holding the query text in a user file."})
    query_data_path: str | None = field(default=None, metadata={"help": "Local copy of a hub dataset (offline use)."})
    task: str = field(
        default="dialogue", metadata={"help": "Prompt style: dialogue or summarisation.", "choices": sorted(INSTRUCTIONS)}
    )
    max_train_queries: int | None = field(default=None, metadata={"help": "Cap on training queries (seeded sample)."})
    max_eval_queries: int | None = field(default=None, metadata={"help": "Cap on held-out queries (paper: 250)."})


@dataclass
class ConstitutionArgs:
    scheme: str = field(
        default="fixed_pair",
        metadata={"help": "fixed_pair (HH: positive vs one/both negated), negations (TL;DR: shuffled order), "
                  "diverse (k of n principles, mirrored flips)."},
    )
    num_constitutions: int = field(default=2, metadata={"help": "C, constitutions per query (paper: 2)."})
    principles_per_constitution: int = field(default=2, metadata={"help": "k for the diverse scheme (paper: 2)."})


@dataclass
class GenerationArgs:
    max_new_tokens: int = field(default=350, metadata={"help": "Response budget (paper: 350; 500 llama3-70b; 800 with CoT)."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (paper)."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus mass when sampling (paper: 0.9)."})
    stop_strings: list[str] = field(default_factory=list, metadata={"help": "Cut responses at these strings."})
    generation_batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    prompt_kind: str = field(
        default="auto",
        metadata={"help": "auto (chat template if the tokenizer has one), base or chat.", "choices": ["auto", "base", "chat"]},
    )
    chain_of_thought: bool = field(default=False, metadata={"help": "Reason first, answer after 'Final response:'."})
    drop_truncated: str = field(
        default="positive", metadata={"help": "positive (paper), any or none.", "choices": ["positive", "any", "none"]}
    )
    drop_identical: bool = field(default=True, metadata={"help": "Drop queries whose responses are not all distinct."})
    device: str = field(default="auto", metadata={"help": "Device for generation: auto, cpu, cuda, cuda:1 ..."})
    generation_dtype: str | None = field(
        default=None,
        metadata={"help": "Weights dtype while generating; default: --dtype where the command has it and it is "
                  f"given, else {DEFAULT_GENERATION_DTYPE} (fastest on GPU and on CPU).",
                  "choices": [*DTYPE_NAMES]},
    )
    generation_backend: str = field(
        default="auto",
        metadata={"help": f"Generation engine: {', '.join(BACKENDS)} (auto: vllm where it is installed, else hf)."},
    )
    vllm_tensor_parallel_size: int = field(
        default=1, metadata={"help": "vLLM: GPUs per engine (tensor parallel); launched processes form groups of this size."}
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vLLM: fraction of GPU memory the engine may take (weights + KV cache)."}
    )
    vllm_enable_sleep_mode: bool = field(
        default=True, metadata={"help": "vLLM on GPUs: free the engine's GPU memory while training (sleep level 2)."}
    )
    vllm_enforce_eager: bool = field(
        default=False, metadata={"help": "vLLM: skip graph capture/compilation (faster start, slower decoding)."}
    )
    vllm_max_model_len: int | None = field(
        default=None, metadata={"help": "vLLM: context length to reserve KV cache for (default: the model's)."}
    )

    def __post_init__(self) -> None:
        check_dtype(self.generation_dtype, "--generation_dtype")

    def dtype(self, loading: ModelLoadingArgs | None = None) -> str:
        """The weights dtype while generating: ``--generation_dtype``, else ``--dtype``, else bfloat16."""
        return self.generation_dtype or (loading.dtype if loading is not None else None) or DEFAULT_GENERATION_DTYPE

    def sampling(self, seed: int) -> SamplingConfig:
        return SamplingConfig(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop_strings=tuple(self.stop_strings),
            batch_size=self.generation_batch_size,
            seed=seed,
        )

    def filters(self) -> FilterConfig:
        return FilterConfig(drop_identical=self.drop_identical, drop_truncated=self.drop_truncated)

    def generator(self, spec: str, seed: int, loading: ModelLoadingArgs | None = None) -> Generator:
        """A generator of the chosen backend with ``spec`` loaded, with ``loading``'s options and dtype if given."""
        return build_generator(
            spec,
            self.generation_backend,
            dtype=self.dtype(loading),
            options=loading.options() if loading is not None else None,
            device=self.device,
            seed=seed,
            vllm_tensor_parallel_size=self.vllm_tensor_parallel_size,
            vllm_gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            vllm_enable_sleep_mode=self.vllm_enable_sleep_mode,
            vllm_enforce_eager=self.vllm_enforce_eager,
            vllm_max_model_len=self.vllm_max_model_len,
        )


@dataclass
class IterationArgs:
    """The SAMI loop of ``sami run``; its run folder is the trainer's ``--output_dir``."""

    iterations: int = field(default=3, metadata={"help": "T, SAMI iterations (paper: 3)."})
    initial_steps: int = field(default=2, metadata={"help": "Optimiser steps at t = 1 (paper: 2 steps of 128 queries)."})
    steps_growth: int = field(default=2, metadata={"help": "Extra steps per iteration (paper: 2, giving 2, 4, 6)."})
    continue_from_previous: bool = field(
        default=False, metadata={"help": "Train iteration t from t-1's weights instead of the base (paper: base)."}
    )
    judge_iterations: bool = field(
        default=False,
        metadata={"help": "After each iteration, judge its held-out responses against the base model's with the "
                  "--judge settings, as `sami evaluate --run_dir` does (docs/evaluation.md)."},
    )
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted run in --output_dir."})

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.initial_steps < 1 or self.steps_growth < 0:
            raise ConfigError("need iterations >= 1, initial_steps >= 1 and steps_growth >= 0")

    def steps(self, t: int) -> int:
        return self.initial_steps + self.steps_growth * (t - 1)


@dataclass
class LaunchArgs:
    """Re-launch the command under ``accelerate launch`` with a config that ships with sami (:mod:`sami.launch`)."""

    accelerate_config: str | None = field(
        default=None,
        metadata={"help": "Run under `accelerate launch` with a config shipped in sami "
                  f"({', '.join(accelerate_config_names())}; docs/training.md) or an accelerate config YAML path."},
    )
    num_processes: int | None = field(
        default=None, metadata={"help": "With --accelerate_config: processes (GPUs) to launch (default: the config's)."}
    )

    def __post_init__(self) -> None:
        if self.num_processes is not None and not self.accelerate_config:
            raise ConfigError("--num_processes sets how many processes --accelerate_config launches; give "
                              "--accelerate_config too (or use `accelerate launch --num_processes N -m sami.cli ...`)")
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError(f"--num_processes {self.num_processes}: launch at least 1 process")
        if self.accelerate_config:
            resolve_accelerate_config(self.accelerate_config)  # an unknown name fails before any work


@dataclass
class HubPushArgs:
    """Pushing generations to the Hugging Face Hub as a dataset (docs/hub.md); ``hf auth login`` first."""

    push_generations_to_hub: str | None = field(
        default=None,
        metadata={"help": "Hub dataset repo (user/name) to push the generations to; sami run: one config per "
                  "iteration (iter_<t>, splits train and eval)."},
    )
    private_dataset: bool = field(
        default=False,
        metadata={"help": "Create the pushed dataset repo as private (an existing repo keeps its visibility)."},
    )
