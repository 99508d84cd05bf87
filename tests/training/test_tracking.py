"""Trackers of a SAMI run (sami/tracking.py): one TensorBoard run per iteration, steps that never restart, a
summary run of per-iteration metrics, and no run for scoring trainers; real event files read back."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_records

from sami.tracking import IterationLogger, iteration_run, metric_values
from sami.training import SAMIConfig, SAMITrainer, evaluate_sami

pytest.importorskip("tensorboard")

STEPS = {1: 2, 2: 3}  # optimiser steps of iterations 1 and 2


def _args(tmp_path: Path, report_to: list[str]) -> SAMIConfig:
    return SAMIConfig(
        output_dir=str(tmp_path / "demo"), report_to=report_to, per_device_train_batch_size=2,
        per_device_eval_batch_size=2, learning_rate=1e-2, disable_tqdm=True, dataloader_pin_memory=False, seed=0,
    )


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of one TensorBoard run folder: ``{tag: [(step, value), ...]}`` in write order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_each_iteration_logs_to_its_own_tensorboard_run(tmp_path, tokenizer, model_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a writer without a folder would create ./runs
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    args = _args(tmp_path, ["tensorboard"])
    logs = tmp_path / "demo" / "logs"
    records = make_records(4)
    summary = IterationLogger.for_run(args, logs)
    summary.log(0, metric_values({"iteration": 0, "model": "base", "mi/bound": 0.1, "response_length": 9.0}))
    bounds = {0: 0.1}
    for t, steps in STEPS.items():
        with iteration_run(args, t, logs) as tracked:
            assert tracked.run_name == f"demo-iter{t}" and not tracked.push_to_hub
            trainer_args = dataclasses.replace(tracked, output_dir=str(tmp_path / "demo" / f"iter_{t}" / "trainer"),
                                               max_steps=steps)
            trainer = SAMITrainer(model_factory(seed=t), trainer_args, train_dataset=records,
                                  processing_class=tokenizer)
            trainer.train()
        scores = evaluate_sami(trainer.model, records, trainer_args, tokenizer=tokenizer)  # a scoring trainer
        bounds[t] = scores["eval_mi/bound"]
        summary.log(t, metric_values({"iteration": t, "mi/bound": bounds[t], "train_steps": steps}))
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ  # restored

    events = sorted(p.parent.relative_to(tmp_path) for p in tmp_path.rglob("events.out.tfevents.*"))
    assert {p.parent for p in events} == {Path("demo/logs")}  # nothing in ./runs, trainer folders or elsewhere
    assert {p.name for p in events} == {"demo", "demo-iter1", "demo-iter2"}  # scoring trainers opened no run
    for t, steps in STEPS.items():
        scalars = _scalars(logs / f"demo-iter{t}")
        assert [step for step, _ in scalars["train/loss"]] == list(range(1, steps + 1))
        assert [step for step, _ in scalars["train/mi/bound"]] == list(range(1, steps + 1))
        for tag, series in scalars.items():  # within a run no series ever goes back in steps
            assert [s for s, _ in series] == sorted(s for s, _ in series), tag

    scalars = _scalars(logs / "demo")
    assert [step for step, _ in scalars["iteration/mi/bound"]] == [0, 1, 2]
    assert [value for _, value in scalars["iteration/mi/bound"]] == pytest.approx([bounds[0], bounds[1], bounds[2]])
    assert scalars["iteration/train_steps"] == [(1, 2.0), (2, 3.0)]
    assert "iteration/model" not in scalars and "iteration/iteration" not in scalars


def test_no_tracker_means_no_files(tmp_path):
    logger = IterationLogger("none", tmp_path / "logs", "demo")
    logger.log(1, {"mi/bound": 0.3})
    assert not (tmp_path / "logs").exists()


RUN_SCRIPT = """
import dataclasses, sys
sys.path.insert(0, {tests!r})
from helpers import make_records, tiny_model
from sami.models import load_tokenizer
from sami.tracking import IterationLogger, iteration_run, metric_values
from sami.training import SAMIConfig, SAMITrainer

tokenizer = load_tokenizer("smollm2-135m")
args = SAMIConfig(output_dir={out!r}, report_to=[{tracker!r}], project="sami-test", per_device_train_batch_size=2,
                  learning_rate=1e-2, disable_tqdm=True, dataloader_pin_memory=False)
summary = IterationLogger.for_run(args, {logs!r})
summary.log(0, {{"mi/bound": 0.1}})
for t, steps in ((1, 2), (2, 3)):
    with iteration_run(args, t, {logs!r}) as tracked:
        model = tiny_model(vocab_size=len(tokenizer), seed=t, tie_word_embeddings=True)
        trainer = SAMITrainer(model, dataclasses.replace(tracked, max_steps=steps), train_dataset=make_records(4),
                              processing_class=tokenizer)
        trainer.train()
    summary.log(t, metric_values({{"iteration": t, "mi/bound": 0.1 + t}}))
"""


def _run_in_subprocess(tmp_path: Path, tracker: str, env: dict) -> None:
    """A two-iteration run logging to ``tracker``, in a process of its own (trackers keep global state)."""
    script = RUN_SCRIPT.format(tests=str(Path(__file__).parents[1]), out=str(tmp_path / "demo"),
                               logs=str(tmp_path / "demo" / "logs"), tracker=tracker)
    env = {**os.environ, **env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def test_trackio_runs_per_iteration_and_summary(tmp_path, tokenizer):
    pytest.importorskip("trackio")
    _run_in_subprocess(tmp_path, "trackio", {"TRACKIO_DIR": str(tmp_path / "trackio")})
    reader = (
        "import json, sys\n"
        "from trackio.sqlite_storage import SQLiteStorage as S\n"
        "runs = S.get_runs('sami-test')\n"
        "print(json.dumps({run: S.get_logs('sami-test', run) for run in runs}, default=str))\n"
    )
    done = subprocess.run([sys.executable, "-c", reader], env={**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(logs) == {"demo", "demo-iter1", "demo-iter2"}
    for t, steps in STEPS.items():
        assert [log["train/global_step"] for log in logs[f"demo-iter{t}"] if "train/loss" in log] == list(
            range(1, steps + 1))
    assert [(log["step"], log["iteration/mi/bound"]) for log in logs["demo"]] == [(0, 0.1), (1, 1.1), (2, 2.1)]


def _wandb_records(path: Path):
    """The protobuf records of an offline wandb run file (a LevelDB log: 32 KiB blocks of checksummed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""  # after the "W&B" header
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a chunk header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_runs_are_grouped_per_iteration(tmp_path, tokenizer):
    pytest.importorskip("wandb")
    _run_in_subprocess(tmp_path, "wandb", {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path),
                                           "WANDB_SILENT": "true"})
    runs: dict[str, dict] = {}
    for path in sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb")):
        name, group, history = None, None, []
        for record in _wandb_records(path):
            if record.WhichOneof("record_type") == "run":
                name, group = record.run.display_name, record.run.run_group
            elif record.WhichOneof("record_type") == "history":
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
        run = runs.setdefault(name, {"groups": set(), "history": []})
        run["groups"].add(group)
        run["history"] += history  # the summary run is resumed (same id) once per logged iteration
    assert set(runs) == {"demo", "demo-iter1", "demo-iter2"}
    assert all(run["groups"] == {"demo"} for run in runs.values())
    for t, steps in STEPS.items():
        logged = [h["train/global_step"] for h in runs[f"demo-iter{t}"]["history"] if "train/loss" in h]
        assert logged == list(range(1, steps + 1))
    summary = [(h["iteration"], h["iteration/mi/bound"]) for h in runs["demo"]["history"]]
    assert summary == [(0, 0.1), (1, 1.1), (2, 2.1)]
