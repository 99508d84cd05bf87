"""Constitution-conditioned responses: for every query x and each of its C constitutions c_i,
the model's response y_i (SAMI.md §2.3).

Records are appended to a JSONL file as each batch finishes, so a killed run loses at most the
batch in flight and rerunning the same call skips the queries already done. Under
``accelerate launch`` each process generates its own shard and the main process merges them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from sami.constitutions import ConstitutionSampler, query_rng, render_constitution
from sami.generation.filters import FilterConfig, FilterReport, drop_reason
from sami.generation.prompts import PromptTemplate, split_reasoning

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings; the defaults are the paper's (greedy, up to 350 new tokens).

    Args:
        max_new_tokens: response budget (paper: 350; 500 for llama3-70b; 800 with chain of thought).
        temperature: 0 means greedy decoding (paper); > 0 samples.
        top_p: nucleus mass when sampling (paper: 0.9).
        stop_strings: cut the response at the first of these (kept out of the response).
        batch_size: prompts per ``generate`` call.
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
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top_p in (0, 1]; got {self.temperature}, {self.top_p}")


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int
    finish_reason: str  # "eos" | "stop" | "length"


class ContextTooLong(ValueError):
    """A prompt plus its response budget does not fit the model's context."""


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def context_length(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def check_context(tokenizer, model, prompts: dict[str, str], max_new_tokens: int, add_special_tokens: bool) -> None:
    """Raise :class:`ContextTooLong` naming every query whose prompt + budget exceeds the context."""
    limit = context_length(model)
    if limit is None:
        return
    too_long = {}
    for query_id, prompt in prompts.items():
        length = len(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        if length + max_new_tokens > limit:
            too_long[query_id] = length
    if too_long:
        shown = ", ".join(f"{k} ({v} tokens)" for k, v in list(too_long.items())[:5])
        raise ContextTooLong(
            f"{len(too_long)} prompt(s) plus max_new_tokens={max_new_tokens} exceed the model's context of {limit} "
            f"tokens: {shown}; shorten or drop these queries, or lower max_new_tokens"
        )


@torch.inference_mode()
def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    sampling: SamplingConfig = SamplingConfig(),
    *,
    add_special_tokens: bool = False,
    progress: tqdm | None = None,
) -> list[Completion]:
    """Batched generation of one completion per prompt, in the order given.

    Prompts are sorted by length so each batch pads little (longest first, so an out-of-memory
    error shows at once), left-padded, and decoded greedily unless ``sampling.temperature > 0``.
    Settings of ``model.generation_config`` that ``sampling`` does not cover (``cache_implementation``,
    ``min_new_tokens``, ...) apply.
    """
    eos_ids = _eos_ids(model, tokenizer)
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
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: dict[int, Completion] = {}
    try:
        for start in range(0, len(order), sampling.batch_size):
            batch = order[start : start + sampling.batch_size]
            inputs = tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
            ).to(model.device)
            torch.manual_seed(sampling.seed + start)
            output = model.generate(**inputs, generation_config=config, tokenizer=tokenizer)
            new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
            for index, tokens in zip(batch, new_tokens):
                results[index] = _completion(tokens, tokenizer, eos_ids, sampling)
            if progress is not None:
                progress.update(len(batch))
    finally:
        tokenizer.padding_side = padding_side
    return [results[i] for i in range(len(prompts))]


def _completion(tokens: list[int], tokenizer, eos_ids: list[int], sampling: SamplingConfig) -> Completion:
    ends = [i for i, t in enumerate(tokens) if t in eos_ids]
    if ends:
        tokens, finish = tokens[: ends[0]], "eos"
    else:
        finish = "length" if len(tokens) >= sampling.max_new_tokens else "eos"
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    for stop in sampling.stop_strings:
        if stop in text:
            text, finish = text[: text.index(stop)], "stop"
    return Completion(text=text.strip(), num_tokens=len(tokens), finish_reason=finish)


# --- datasets of records -------------------------------------------------------------------


def read_records(path: str | Path) -> list[dict]:
    """Read a generations JSONL file, dropping a torn last line left by a killed run."""
    path = Path(path)
    if not path.exists():
        return []
    records, lines = [], path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                logger.warning("%s: ignoring a torn last line (a run was interrupted mid-write)", path)
                continue
            raise ValueError(f"{path}:{number} is not valid JSON; the file is corrupt, regenerate it") from None
    return records


def drop_torn_tail(path: Path) -> None:
    """Cut a last line that a killed run left half-written, so appending starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def write_records(records: Sequence[dict], path: str | Path) -> None:
    """Write records atomically (a temporary file renamed into place)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.replace(path)


def config_hash(**parts) -> str:
    """A short hash of everything that determines the generated data."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def generate_dataset(
    model,
    tokenizer,
    queries: Sequence,
    sampler: ConstitutionSampler,
    template: PromptTemplate,
    output: str | Path,
    *,
    sampling: SamplingConfig = SamplingConfig(),
    filters: FilterConfig = FilterConfig(),
    seed: int = 0,
    provenance: dict | None = None,
    show_progress: bool = True,
) -> FilterReport:
    """Generate one record per query into ``output`` (JSONL), resumably; return the filter report.

    Each record holds the query, its C constitutions (stances and rendered text), the prompts,
    the responses (and chain-of-thought reasoning), token counts, finish reasons, provenance and
    ``dropped`` (the filter rule it broke, or ``None``). ``filter_report.json`` lands beside it.
    """
    state = PartialState()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    digest = config_hash(
        sampling=asdict(sampling), template=asdict(template), sampler=repr(sampler), filters=asdict(filters), seed=seed
    )
    provenance = {**(provenance or {}), "config_hash": digest, "seed": seed}
    shard_paths = [_shard_path(output, rank) for rank in range(state.num_processes)]
    existing = [r for path in [output, *shard_paths] for r in read_records(path)]
    stale = {r["provenance"].get("config_hash") for r in existing} - {digest}
    if stale:
        raise ValueError(
            f"{output} holds records generated with other settings (config hash {sorted(stale)} != {digest}); "
            "write to a new output path, or delete the file to regenerate"
        )
    done = {r["query_id"] for r in existing}
    todo = [q for q in queries if q.id not in done]
    mine = todo[state.process_index :: state.num_processes]

    items = []
    for query in mine:
        constitutions = sampler.sample(query_rng(seed, query.id))
        texts = [render_constitution(c) for c in constitutions]
        items.append((query, constitutions, [template.render(tokenizer, t, query.text) for t in texts]))
    check_context(
        tokenizer,
        model,
        {q.id: max(prompts, key=len) for q, _, prompts in items},
        sampling.max_new_tokens,
        template.add_special_tokens,
    )
    items.sort(key=lambda item: -max(len(p) for p in item[2]))
    queries_per_call = max(1, sampling.batch_size // max(1, sampler.num_constitutions))
    target = output if state.num_processes == 1 else shard_paths[state.process_index]
    drop_torn_tail(target)
    with target.open("a", encoding="utf-8") as handle, tqdm(
        total=len(items),
        desc=f"generating (rank {state.process_index})" if state.num_processes > 1 else "generating",
        unit="query",
        disable=not show_progress,
        initial=0,
    ) as bar:
        for start in range(0, len(items), queries_per_call):
            chunk = items[start : start + queries_per_call]
            prompts = [p for _, _, ps in chunk for p in ps]
            chunk_sampling = SamplingConfig(**{**asdict(sampling), "seed": sampling.seed + start})
            completions = generate_texts(
                model, tokenizer, prompts, chunk_sampling, add_special_tokens=template.add_special_tokens
            )
            for index, (query, constitutions, query_prompts) in enumerate(chunk):
                own = completions[index * len(query_prompts) : (index + 1) * len(query_prompts)]
                record = _record(query, constitutions, query_prompts, own, template, provenance)
                record["dropped"] = drop_reason(record, filters)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(chunk))

    state.wait_for_everyone()
    if state.is_main_process:
        order = {q.id: i for i, q in enumerate(queries)}
        records = [r for path in [output, *shard_paths] for r in read_records(path)]
        records.sort(key=lambda r: order.get(r["query_id"], len(order)))
        write_records(records, output)
        for path in shard_paths:
            if path != output and path.exists():
                path.unlink()
        report = FilterReport.from_records(records)
        (output.parent / f"{output.stem}.filter_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        logger.info("%s: %s", output, report.summary())
    state.wait_for_everyone()
    return FilterReport.from_records(read_records(output))


def _record(query, constitutions, prompts, completions, template: PromptTemplate, provenance: dict) -> dict:
    reasoning, responses = [], []
    for completion in completions:
        if template.chain_of_thought:
            thought, answer = split_reasoning(completion.text)
            reasoning.append(thought)
            responses.append(answer if thought is not None else None)
        else:
            reasoning.append(None)
            responses.append(completion.text)
    return {
        "query_id": query.id,
        "query": query.text,
        "task": template.task,
        "template": asdict(template),
        "constitutions": [{**c.to_dict(), "text": render_constitution(c)} for c in constitutions],
        "prompts": list(prompts),
        "responses": responses,
        "reasoning": reasoning,
        "response_tokens": [c.num_tokens for c in completions],
        "finish_reasons": [c.finish_reason for c in completions],
        "provenance": provenance,
    }


def kept_records(path: str | Path) -> list[dict]:
    """The records of a generations file that passed the filters (the training data)."""
    return [r for r in read_records(path) if r.get("dropped") is None]
