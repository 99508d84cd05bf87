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
    sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
    template = resolve_template(tiny.tokenizer, "dialogue")
    sampling = kwargs.pop("sampling", SamplingConfig(max_new_tokens=6, batch_size=4, temperature=1.0))
    return generate_dataset(tiny, kwargs.pop("queries", QUERIES), sampler, template, path,
                            sampling=sampling, filters=FilterConfig(drop_truncated="none"), show_progress=False, **kwargs)


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
