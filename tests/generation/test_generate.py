import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sami.constitutions import build_sampler
from sami.generation import (
    ContextTooLong,
    FilterConfig,
    HFGenerator,
    OtherSettingsError,
    SamplingConfig,
    generate_dataset,
    generate_texts,
    kept_records,
    resolve_template,
)
from sami.generation.filters import FilterReport, drop_reason
from sami.jsonl import read_jsonl
from sami.principles import load_principles
from sami.records import GenerationRecord


def records_in(path):
    """The records of a generations file; none when it was never written."""
    return read_jsonl(path, missing="empty")


@dataclass(frozen=True)
class Q:
    id: str
    text: str


QUERIES = [Q(f"q{i}", f"Question number {i}: {'why ' * (i % 4)}is the sky blue?") for i in range(7)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return HFGenerator(str(tiny_model_dir), dtype="float32", device="cpu")


def _generate(tiny, path, **kwargs):
    sampler = kwargs.pop("sampler", None) or build_sampler("fixed_pair", load_principles("hh"), 2)
    template = kwargs.pop("template", None) or resolve_template(tiny.tokenizer, "dialogue")
    sampling = kwargs.pop("sampling", SamplingConfig(max_new_tokens=6, batch_size=4, temperature=1.0))
    filters = kwargs.pop("filters", FilterConfig(drop_truncated="none"))
    return generate_dataset(tiny, kwargs.pop("queries", QUERIES), sampler, template, path,
                            sampling=sampling, filters=filters, show_progress=False, **kwargs)


def test_generate_texts_keeps_order_and_counts_tokens(tiny):
    prompts = ["short", "a much longer prompt than the first one", "mid length"]
    out = generate_texts(tiny, prompts, SamplingConfig(max_new_tokens=5, batch_size=2))
    alone = [generate_texts(tiny, [p], SamplingConfig(max_new_tokens=5))[0] for p in prompts]
    assert [o.text for o in out] == [a.text for a in alone]  # greedy: batching and sorting change nothing
    assert all(o.num_tokens <= 5 and o.finish_reason in ("eos", "length") for o in out)
    assert all(len(o.token_ids) == o.num_tokens for o in out)


def test_records_hold_everything_and_a_report_is_written(tiny, tmp_path):
    path = tmp_path / "gen.jsonl"
    report = _generate(tiny, path, model_name="tiny")
    records = records_in(path)
    assert [r["query_id"] for r in records] == [q.id for q in QUERIES]  # query order, whatever the batching
    record = records[0]
    assert len(record["constitutions"]) == len(record["prompts"]) == len(record["responses"]) == 2
    assert record["constitutions"][0]["text"] in record["prompts"][0]
    assert record["provenance"]["model"] == "tiny" and record["provenance"]["config_hash"]
    assert (record["provenance"]["backend"], record["provenance"]["dtype"]) == ("hf", "float32")
    assert report.total == 7 and report.kept == len(kept_records(path))
    assert json.loads((tmp_path / "gen.filter_report.json").read_text())["total"] == 7
    # the on-disk field order of a generations record (sami.records.GenerationRecord)
    assert list(record) == ["query_id", "query", "task", "template", "constitutions", "prompts", "responses",
                            "reasoning", "response_tokens", "finish_reasons", "provenance", "dropped"]
    assert all(GenerationRecord.from_dict(r).to_dict() == r for r in records)


def test_rerun_after_a_kill_writes_what_an_uninterrupted_run_writes(tiny, tmp_path):
    path = tmp_path / "gen.jsonl"
    _generate(tiny, path)  # sampled (temperature 1), batches of 2 queries
    full = records_in(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # killed while writing the 4th record
    assert len(records_in(path)) == 3
    _generate(tiny, path)
    resumed = records_in(path)
    assert [r["query_id"] for r in resumed] == [r["query_id"] for r in full]
    assert resumed == full  # same batches, same seeds: the resumed file equals the uninterrupted one


def test_a_file_from_another_model_is_refused_naming_the_model(tiny, tiny_model_dir, tmp_path):
    path = tmp_path / "gen.jsonl"
    _generate(tiny, path, queries=QUERIES[:2], model_name="model-a")
    with pytest.raises(OtherSettingsError, match="model 'model-a' -> 'model-b'"):
        _generate(tiny, path, model_name="model-b")
    assert len(records_in(path)) == 2  # nothing of model B was appended


def test_other_settings_in_the_same_file_are_refused(tiny, tmp_path):
    path = tmp_path / "gen.jsonl"
    _generate(tiny, path, queries=QUERIES[:2])
    with pytest.raises(OtherSettingsError, match="other settings"):
        _generate(tiny, path, sampling=SamplingConfig(max_new_tokens=7, batch_size=4))


class SeedRecorder(HFGenerator):
    """The hf backend, remembering the seed each prompt was sampled with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seeds: dict[tuple, int] = {}

    def generate(self, prompts, sampling, seeds=None):
        self.seeds.update(zip(map(tuple, prompts), seeds))
        return super().generate(prompts, sampling, seeds)


def test_sampling_seeds_depend_on_the_query_not_on_what_is_left_to_do(tiny_model_dir, tmp_path):
    """A prompt's seed is a function of (seed, query id, constitution index): a resumed run, a subset or
    another order of the queries samples every prompt with the seed an uninterrupted run used."""
    whole = SeedRecorder(str(tiny_model_dir), dtype="float32", device="cpu")
    _generate(whole, tmp_path / "whole.jsonl")
    assert len(whole.seeds) == 2 * len(QUERIES) and len(set(whole.seeds.values())) == 2 * len(QUERIES)

    path = tmp_path / "resumed.jsonl"
    _generate(whole, path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1]) + "\n")  # killed after the first record: 6 of 7 queries left to do
    resumed = SeedRecorder(str(tiny_model_dir), dtype="float32", device="cpu")
    _generate(resumed, path)
    part = SeedRecorder(str(tiny_model_dir), dtype="float32", device="cpu")
    _generate(part, tmp_path / "part.jsonl", queries=QUERIES[:1:-1])  # a subset, in reverse order
    for run in (resumed, part):
        assert run.seeds and all(whole.seeds[prompt] == seed for prompt, seed in run.seeds.items())
    assert records_in(path) == records_in(tmp_path / "whole.jsonl")
    other_seed = SeedRecorder(str(tiny_model_dir), dtype="float32", device="cpu")
    _generate(other_seed, tmp_path / "other.jsonl", seed=1,
              sampling=SamplingConfig(max_new_tokens=6, batch_size=4, temperature=1.0, seed=1))
    assert not set(other_seed.seeds.values()) & set(whole.seeds.values())


@pytest.mark.parametrize(
    "part, change, named",
    [
        ("generator", {"model_name": "model-b"}, "model 'model-a' -> 'model-b'"),
        ("generator", {"dtype": "bfloat16"}, "dtype 'float32' -> 'bfloat16'"),
        ("sampling", {"sampling": SamplingConfig(max_new_tokens=7, batch_size=4, temperature=1.0)}, "sampling"),
        ("template", {"template": "base"}, "prompt template"),
        ("sampler", {"sampler": 3}, "constitutions"),
        ("filters", {"filters": FilterConfig(drop_truncated="any")}, "filters"),
        ("seed", {"seed": 1}, "seed 0 -> 1"),
    ],
)
def test_each_part_of_the_resume_key_is_named_when_it_differs(tiny, tiny_model_dir, tmp_path, part, change, named):
    path = tmp_path / "gen.jsonl"
    _generate(tiny, path, queries=QUERIES[:2], model_name="model-a")
    parts = records_in(path)[0]["provenance"]["config_parts"]
    assert set(parts) == {"generator", "sampling", "template", "sampler", "filters", "seed"}
    generator, kwargs = tiny, {"model_name": "model-a", **change}
    if "dtype" in kwargs:
        generator = HFGenerator(str(tiny_model_dir), dtype=kwargs.pop("dtype"), device="cpu")
    if "template" in kwargs:
        kwargs["template"] = resolve_template(tiny.tokenizer, "dialogue", kwargs["template"])
    if "sampler" in kwargs:
        kwargs["sampler"] = build_sampler("fixed_pair", load_principles("hh"), kwargs["sampler"])
    with pytest.raises(OtherSettingsError) as refused:
        _generate(generator, path, **kwargs)
    message = str(refused.value)
    assert named in message and str(path) in message
    assert message.count(" -> ") + message.count(" differ") == 1, message  # that part, and no other
    assert len(records_in(path)) == 2  # nothing was appended


def test_files_from_before_the_per_part_key_are_still_refused(tiny, tmp_path):
    path = tmp_path / "gen.jsonl"
    _generate(tiny, path, queries=QUERIES[:2])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for record in lines:
        del record["provenance"]["config_parts"]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    _generate(tiny, path, queries=QUERIES[:3])  # same settings: the resume key (config_hash) is unchanged
    with pytest.raises(OtherSettingsError, match="sampling settings, prompt template, constitutions or filters"):
        _generate(tiny, path, sampling=SamplingConfig(max_new_tokens=7, batch_size=4))


def test_a_query_longer_than_the_context_is_an_error_before_any_work(tiny, tmp_path):
    long_query = Q("long", "word " * 1100)
    path = tmp_path / "gen.jsonl"
    with pytest.raises(ContextTooLong, match="long"):
        _generate(tiny, path, queries=[QUERIES[0], long_query])
    assert not records_in(path)


def _record(responses, finish=("eos", "eos"), positive=(True, False)):
    return {
        "responses": list(responses),
        "finish_reasons": list(finish),
        "constitutions": [{"stances": [{"affirmed": p}]} for p in positive],
    }


@pytest.mark.parametrize(
    "record, reason",
    [
        (_record(["a", "b"]), None),
        (_record(["a", " "]), "empty_response"),
        (_record(["same", "same "]), "identical_responses"),
        (_record(["Dear [Insert name]", "b"]), "placeholder_text"),
        (_record(["a", "b"], finish=("length", "eos")), "truncated_positive"),
        (_record(["a", "b"], finish=("eos", "length")), None),
        (_record([None, "b"]), "no_answer_marker"),
    ],
)
def test_filters_name_the_rule(record, reason):
    assert drop_reason(record, FilterConfig()) == reason


def test_filter_report_counts_every_drop():
    report = FilterReport.from_records([{"dropped": None}, {"dropped": "empty_response"}, {"dropped": "empty_response"}])
    assert report.to_dict() == {"total": 3, "kept": 1, "dropped": {"empty_response": 2}}
    assert "kept 1 of 3" in report.summary()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_generate_shards_that_merge_into_one_file(tiny_model_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): each generates its shard, the main process merges them
    into what one process writes."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate command is not installed")
    args = [
        "generate", "--model", str(tiny_model_dir), "--principles", "hh", "--max_train_queries", "6",
        "--max_new_tokens", "4", "--temperature", "0.7", "--drop_identical", "false", "--drop_truncated", "none",
        "--generation_dtype", "float32", "--device", "cpu",
    ]
    # --multi_gpu selects the torch.distributed launcher (--cpu starts a single process without mpirun)
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    output = tmp_path / "gen.jsonl"
    result = subprocess.run([*launcher, "-m", "sami.cli", *args, "--output", str(output)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "generating (shard 0)" in result.stderr and "generating (shard 1)" in result.stderr  # really 2 shards
    records = records_in(output)
    assert len(records) == 6 and len({r["query_id"] for r in records}) == 6
    assert not list(tmp_path.glob("gen.rank*.jsonl"))

    alone = tmp_path / "alone.jsonl"
    result = subprocess.run([sys.executable, "-m", "sami.cli", *args, "--output", str(alone)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert records == records_in(alone)  # per-prompt seeds: the shards merge into the one-process file


@pytest.mark.slow
def test_sami_generate_on_the_embedded_model(tmp_path):
    """`sami generate` end to end on SmolLM2-135M-Instruct: two queries, both constitutions answered."""
    from sami.cli import main

    output = tmp_path / "gen.jsonl"
    assert main(["generate", "--principles", "hh", "--max_train_queries", "2", "--max_new_tokens", "16",
                 "--drop_truncated", "none", "--drop_identical", "false", "--output", str(output)]) == 0
    records = records_in(output)
    assert len(records) == 2
    assert all(len(r["responses"]) == 2 and all(r["responses"]) for r in records)
    assert all(r["template"]["kind"] == "chat" and r["provenance"]["model"] == "smollm2-135m" for r in records)
