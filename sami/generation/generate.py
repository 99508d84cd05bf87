"""Constitution-conditioned responses: for every query x and each of its C constitutions c_i,
the model's response y_i (the paper's method; docs/generation.md).

Any :class:`~sami.generation.engine.Generator` backend writes them. Records are appended to a JSONL
file as each batch finishes, so a killed run loses at most the batch in flight and rerunning the
same call regenerates exactly that. Under ``accelerate launch`` each data shard (a process, or a
vLLM tensor-parallel group) generates its part and the main process merges them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm

from sami.constitutions import ConstitutionSampler, query_rng, render_constitution
from sami.errors import SamiError
from sami.generation.engine import Completion, Generator, SamplingConfig, encode_prompts, prompt_seed
from sami.generation.filters import FilterConfig, FilterReport, drop_reason
from sami.generation.prompts import PromptTemplate, split_reasoning
from sami.jsonl import JsonlAppender, read_jsonl, write_json, write_jsonl
from sami.records import GenerationRecord

logger = logging.getLogger(__name__)


class ContextTooLong(SamiError, ValueError):
    """A prompt plus its response budget does not fit the model's context."""


class OtherSettingsError(SamiError, ValueError):
    """An output file holds records generated with other settings."""


def check_context(limit: int | None, prompt_lengths: dict[str, int], max_new_tokens: int) -> None:
    """Raise :class:`ContextTooLong` naming every query whose prompt + budget exceeds the context."""
    if limit is None:
        return
    too_long = {k: n for k, n in prompt_lengths.items() if n + max_new_tokens > limit}
    if too_long:
        shown = ", ".join(f"{k} ({v} tokens)" for k, v in list(too_long.items())[:5])
        raise ContextTooLong(
            f"{len(too_long)} prompt(s) plus max_new_tokens={max_new_tokens} exceed the model's context of {limit} "
            f"tokens: {shown}; shorten or drop these queries, or lower max_new_tokens"
        )


def generate_texts(
    generator: Generator, prompts: Sequence[str], sampling: SamplingConfig = SamplingConfig(), *,
    add_special_tokens: bool = False,
) -> list[Completion]:
    """One completion per rendered prompt, in the order given (seeded by position)."""
    return generator.generate(encode_prompts(generator.tokenizer, prompts, add_special_tokens), sampling)


# --- datasets of records -------------------------------------------------------------------


def config_hash(**parts) -> str:
    """A short hash of everything that determines the generated data."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.stem}.rank{rank}{output.suffix}")


def generate_dataset(
    generator: Generator,
    queries: Sequence,
    sampler: ConstitutionSampler,
    template: PromptTemplate,
    output: str | Path,
    *,
    sampling: SamplingConfig = SamplingConfig(),
    filters: FilterConfig = FilterConfig(),
    seed: int = 0,
    model_name: str | None = None,
    provenance: dict | None = None,
    show_progress: bool = True,
) -> FilterReport:
    """Generate one record per query into ``output`` (JSONL), resumably; return the filter report.

    Each record holds the query, its C constitutions (stances and rendered text), the prompts,
    the responses (and chain-of-thought reasoning), token counts, finish reasons, provenance and
    ``dropped`` (the filter rule it broke, or ``None``). ``filter_report.json`` lands beside it.

    The work is planned over all ``queries`` (length-sorted batches), so a rerun after a crash
    regenerates exactly the batches that were lost, with the same seeds: the file ends as an
    uninterrupted run would have written it. ``model_name`` names the model in the records and in
    their resume key (default: the spec the generator loaded).
    """
    state = PartialState()
    tokenizer = generator.tokenizer
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model_name = model_name or generator.spec
    identity = {"model": model_name, **generator.identity()}
    parts = {
        "generator": identity, "sampling": asdict(sampling), "template": asdict(template), "sampler": repr(sampler),
        "filters": asdict(filters), "seed": seed,
    }
    provenance = {
        **(provenance or {}), **identity, "config_hash": config_hash(**parts), "seed": seed,
        "config_parts": {name: config_hash(part=part) for name, part in parts.items()},
    }
    shard_index, num_shards, writes = generator.shard
    shard_paths = [_shard_path(output, rank) for rank in range(num_shards)]
    existing = [r for path in [output, *shard_paths] for r in _read(path)]
    _refuse_other_settings(output, existing, provenance, identity)
    done = {r["query_id"] for r in existing}

    items = []
    for query in queries:
        constitutions = sampler.sample(query_rng(seed, query.id))
        prompts = [template.render(tokenizer, render_constitution(c), query.text) for c in constitutions]
        items.append((query, constitutions, prompts, encode_prompts(tokenizer, prompts, template.add_special_tokens)))
    check_context(
        generator.context_length, {q.id: max(map(len, ids)) for q, _, _, ids in items}, sampling.max_new_tokens
    )
    # the plan depends on the queries alone (not on what is done), so a rerun rebuilds the same batches
    items.sort(key=lambda item: -max(map(len, item[3])))
    queries_per_call = max(1, generator.prompts_per_call(sampling) // max(1, sampler.num_constitutions))
    chunks = [items[i : i + queries_per_call] for i in range(0, len(items), queries_per_call)]
    mine = [c for k, c in enumerate(chunks) if k % num_shards == shard_index and any(q.id not in done for q, *_ in c)]
    target = output if num_shards == 1 else shard_paths[shard_index]
    with JsonlAppender(target, enabled=writes) as out, tqdm(
        total=sum(q.id not in done for c in mine for q, *_ in c),
        desc=f"generating (shard {shard_index})" if num_shards > 1 else "generating",
        unit="query",
        disable=not (show_progress and writes),
    ) as bar:
        for chunk in mine:
            ids = [p for *_, query_ids in chunk for p in query_ids]
            seeds = [prompt_seed(sampling.seed, q.id, i) for q, _, prompts, _ in chunk for i in range(len(prompts))]
            completions = generator.generate(ids, sampling, seeds)
            for index, (query, constitutions, query_prompts, _) in enumerate(chunk):
                if query.id in done:  # a batch cut short by a crash is regenerated whole, its finished records kept
                    continue
                own = completions[index * len(query_prompts) : (index + 1) * len(query_prompts)]
                record = _record(query, constitutions, query_prompts, own, template, provenance)
                record["dropped"] = drop_reason(record, filters)
                out.write(record)
                bar.update(1)
            out.commit()

    state.wait_for_everyone()
    if state.is_main_process:
        order = {q.id: i for i, q in enumerate(queries)}
        records = [r for path in [output, *shard_paths] for r in _read(path)]
        records.sort(key=lambda r: order.get(r["query_id"], len(order)))
        write_jsonl(records, output)
        for path in shard_paths:
            if path != output and path.exists():
                path.unlink()
        report = FilterReport.from_records(records)
        write_json(report.to_dict(), output.parent / f"{output.stem}.filter_report.json")
        logger.info("%s: %s", output, report.summary())
    state.wait_for_everyone()
    return FilterReport.from_records(_read(output))


def _read(path: Path) -> list[dict]:
    """The records of a generations file or shard; none while it does not exist yet."""
    return read_jsonl(path, missing="empty", what="generations file")


PART_SETTINGS = {
    "sampling": "the sampling settings (max_new_tokens, temperature, top_p, stop_strings, generation_batch_size)",
    "template": "the prompt template (task, prompt_kind, chain_of_thought)",
    "sampler": "the constitutions (principles, scheme, num_constitutions, principles_per_constitution)",
    "filters": "the filters (drop_identical, drop_truncated)",
}
"""The parts of the resume key (``provenance["config_parts"]``) that the refusal names by their settings; the
generator (model, backend, dtype, ...) and the seed are named by their values."""


def _refuse_other_settings(output: Path, existing: list[dict], provenance: dict, identity: dict) -> None:
    """Refuse to append to records generated with other settings, naming each part of the resume key that differs."""
    stale = next((r["provenance"] for r in existing if r["provenance"].get("config_hash") != provenance["config_hash"]),
                 None)
    if stale is None:
        return
    differs = [f"{k} {stale.get(k)!r} -> {provenance[k]!r}" for k in [*identity, "seed"]
               if stale.get(k) != provenance[k]]
    old_parts, new_parts = stale.get("config_parts", {}), provenance["config_parts"]
    differs += [f"{settings} differ" for name, settings in PART_SETTINGS.items()
                if name in old_parts and old_parts[name] != new_parts[name]]
    detail = "; ".join(differs) or "the sampling settings, prompt template, constitutions or filters differ"
    raise OtherSettingsError(
        f"{output} holds records generated with other settings ({detail}); "
        "write to a new output path, or delete the file to regenerate"
    )


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
    return GenerationRecord(
        query_id=query.id,
        query=query.text,
        task=template.task,
        template=asdict(template),
        constitutions=[{**c.to_dict(), "text": render_constitution(c)} for c in constitutions],
        prompts=list(prompts),
        responses=responses,
        reasoning=reasoning,
        response_tokens=[c.num_tokens for c in completions],
        finish_reasons=[c.finish_reason for c in completions],
        provenance=provenance,
    ).to_dict()


def kept_records(path: str | Path) -> list[dict]:
    """The records of a generations file that passed the filters (the training data), as plain dicts."""
    return [r for r in read_jsonl(path, what="generations file") if r.get("dropped") is None]
