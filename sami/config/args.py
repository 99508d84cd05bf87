"""Flat argument groups shared by the commands. Each field's ``help`` is what ``--help`` prints.

Names never clash with ``transformers.TrainingArguments`` (``sami run`` parses both), which is
why the seed of ``sami run`` is the trainer's ``--seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sami.generation.filters import FilterConfig
from sami.generation.engine import BACKENDS, Generator, SamplingConfig, build_generator
from sami.models.embedded import DEFAULT_MODEL
from sami.principles.writer import ASPECTS


@dataclass
class ModelArgs:
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Target model: embedded name (smollm2-135m, gemma3-270m), checkpoint folder, .gguf or hub id."},
    )
    device: str = field(default="auto", metadata={"help": "Device for generation: auto, cpu, cuda, cuda:1 ..."})
    generation_dtype: str = field(
        default="bfloat16", metadata={"help": "Weights dtype while generating (bfloat16 is fastest on GPU and on CPU)."}
    )


@dataclass
class PrincipleArgs:
    principles: str | None = field(
        default=None,
        metadata={"help": "Principle file (YAML/JSON) or built-in name (hh, tldr, tldr_diverse, verifiable); "
                  "leave empty to have --writer write them from --task_description."},
    )
    task_description: str | None = field(default=None, metadata={"help": "What the principles are for (the writer's input)."})
    num_principles: int = field(default=2, metadata={"help": "How many principles the writer writes."})
    writer: str = field(default=DEFAULT_MODEL, metadata={"help": "Principle-writer model spec (paper: claude-opus, mistral-7b-instruct)."})
    writer_temperature: float = field(default=0.8, metadata={"help": "Writer sampling temperature (retries need > 0)."})
    writer_max_rounds: int = field(default=10, metadata={"help": "Batches of 8 samples before the writer gives up."})
    writer_aspects: list[str] = field(
        default_factory=lambda: list(ASPECTS),
        metadata={"help": "Aspects of a response the writer is steered to, one per principle, in turn."},
    )


@dataclass
class QueryArgs:
    queries: str = field(
        default="dialogue",
        metadata={"help": "Query set: dialogue, summarisation, hh-rlhf:helpful-base, hh-rlhf:harmless-base, tldr, "
                  "or a .jsonl/.json/.csv file."},
    )
    query_column: str | None = field(default=None, metadata={"help": "Column holding the query text in a user file."})
    query_data_path: str | None = field(default=None, metadata={"help": "Local copy of a hub dataset (offline use)."})
    task: str = field(default="dialogue", metadata={"help": "Prompt style: dialogue or summarisation."})
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
    prompt_kind: str = field(default="auto", metadata={"help": "auto (chat template if the tokenizer has one), base or chat."})
    chain_of_thought: bool = field(default=False, metadata={"help": "Reason first, answer after 'Final response:'."})
    drop_truncated: str = field(default="positive", metadata={"help": "positive (paper), any or none."})
    drop_identical: bool = field(default=True, metadata={"help": "Drop queries whose responses are not all distinct."})
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

    def generator(self, spec: str, model_args: ModelArgs, seed: int) -> Generator:
        """A generator of the chosen backend with ``spec`` loaded."""
        return build_generator(
            spec,
            self.generation_backend,
            dtype=model_args.generation_dtype,
            device=model_args.device,
            seed=seed,
            vllm_tensor_parallel_size=self.vllm_tensor_parallel_size,
            vllm_gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            vllm_enable_sleep_mode=self.vllm_enable_sleep_mode,
            vllm_enforce_eager=self.vllm_enforce_eager,
            vllm_max_model_len=self.vllm_max_model_len,
        )
