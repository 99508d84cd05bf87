"""The ``hf`` generation backend: ``model.generate`` in this process, batched and left-padded."""

from __future__ import annotations

import copy
import gc
from collections.abc import Sequence

import torch
from accelerate import PartialState

from sami.generation.engine import Completion, SamplingConfig, eos_token_ids, finish_completion
from sami.models.options import ModelOptions


class HFGenerator:
    """Generates with a transformers model; under ``accelerate launch`` each process takes its own shard.

    Prompts are sorted by length so each batch pads little (longest first, so an out-of-memory error shows
    at once), left-padded into batches of ``sampling.batch_size``, and decoded greedily unless
    ``sampling.temperature > 0``. Settings of ``model.generation_config`` that ``sampling`` does not cover
    (``cache_implementation``, ``min_new_tokens``, ...) apply. ``options`` load every model it generates with
    (revision, trust_remote_code, attn_implementation, device_map, 4/8-bit weights).
    """

    backend = "hf"

    def __init__(
        self,
        spec: str | None,
        *,
        dtype: str | torch.dtype = "bfloat16",
        device: str = "auto",
        options: ModelOptions | None = None,
    ):
        # join the launched processes before loading: PartialState() alone forms a process group only on
        # accelerators, so on CPUs each launched process would take itself for the only one (and write every shard)
        PartialState(cpu=device == "cpu" or not torch.accelerator.is_available())
        self.dtype, self.device = dtype, device
        self.options = options or ModelOptions()
        self.spec: str | None = None
        self.model = None
        self.tokenizer = None
        if spec is not None:
            self.load(spec)

    @classmethod
    def from_model(cls, model, tokenizer, spec: str | None = None) -> HFGenerator:
        """Wrap a model already in memory (its dtype and device as they are)."""
        generator = cls(None, dtype=model.dtype, device=str(model.device))
        generator.model, generator.tokenizer, generator.spec = model, tokenizer, spec
        return generator

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    @property
    def shard(self) -> tuple[int, int, bool]:
        state = PartialState()
        return state.process_index, state.num_processes, True

    def identity(self) -> dict:
        return {
            "backend": self.backend,
            "dtype": str(self.dtype).removeprefix("torch."),
            **self.options.identity(self.spec),
        }

    def prompts_per_call(self, sampling: SamplingConfig) -> int:
        return sampling.batch_size

    def load(self, spec: str) -> None:
        if spec == self.spec and self.model is not None:
            return
        from sami.models import load_model

        self.release()
        self.model, self.tokenizer = load_model(spec, dtype=self.dtype, device=self.device, options=self.options)
        self.spec = spec

    def release(self) -> None:
        """Drop the model; the next :meth:`load` reads it again (a fraction of a second for small models)."""
        if self.model is None:
            return
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig, seeds: Sequence[int] | None = None
    ) -> list[Completion]:
        model, tokenizer = self.model, self.tokenizer
        eos_ids = eos_token_ids(model.generation_config, tokenizer)
        config = copy.deepcopy(model.generation_config)  # keeps the model's own settings (e.g. cache_implementation)
        config.update(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=sampling.temperature > 0,
            temperature=sampling.temperature if sampling.temperature > 0 else None,
            top_p=sampling.top_p if sampling.temperature > 0 else None,
            top_k=None,
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
            stop_strings=list(sampling.stop_strings) or None,
        )
        seeds = list(seeds) if seeds is not None else [sampling.seed + i for i in range(len(prompts))]
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: dict[int, Completion] = {}
        try:
            for start in range(0, len(order), sampling.batch_size):
                batch = order[start : start + sampling.batch_size]
                inputs = tokenizer.pad({"input_ids": [list(prompts[i]) for i in batch]}, return_tensors="pt")
                # one generator per batch: seeded by its prompts' seeds, so a rerun of the same batch samples the same
                torch.manual_seed(sum(seeds[i] for i in batch) % (2**63))
                output = model.generate(**inputs.to(model.device), generation_config=config, tokenizer=tokenizer)
                new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
                for index, tokens in zip(batch, new_tokens):
                    results[index] = finish_completion(tokens, tokenizer, eos_ids, sampling)
        finally:
            tokenizer.padding_side = padding_side
        return [results[i] for i in range(len(prompts))]
