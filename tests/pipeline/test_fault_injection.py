"""`kill -9` anywhere in a `sami run`, then `--resume`: the run ends as an uninterrupted one (docs/reliability.md).

Real processes on the tiny random-weight model, killed with SIGKILL by tests/pipeline/fault_driver.py.
One run is killed at every point in turn, each `--resume` dying at the next one, and the finished run
is compared byte for byte with an uninterrupted run: metrics, generations, held-out responses,
constitutions, Trainer checkpoints and the final weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about a dozen `sami run` processes on the tiny model

# (where the process dies, how the next one names the run folder: the same folder spelled or moved differently)
KILLS = [
    ("after_stage:evaluate_0", "run"),  # a stage boundary
    ("trainer_state:1:1", "run/"),  # iteration 1's only checkpoint torn: training restarts from the base
    ("after_stage:train_1", "{tmp}/run"),  # a stage boundary, after the final save
    ("metrics:1", "./run//"),  # evaluate_1 wrote its metrics but was not recorded as finished
    ("generation:2", "run"),  # 1 of iteration 2's 4 records written
    ("training:2:1", "elsewhere/run"),  # step 2 of 2 in progress, checkpoint-1 complete; the folder is moved
    ("trainer_weights:2:2", "elsewhere/run"),  # checkpoint-2's weights half written (.tmp file)
    ("final_save:2", "{tmp}/elsewhere/run/"),  # iter_2/checkpoint's weights half written (.tmp file)
    ("evaluation:2", "elsewhere/run"),  # held-out responses written, their SAMI metrics being computed
]
MOVED = "elsewhere/run"  # the same name in another folder: model cards name the run by its folder's name
TIMINGS = re.compile(r"(_runtime|_per_second)$")  # the Trainer's clock readings: they differ between any two runs


def stage_of(path: str) -> str | None:
    """The stage that writes ``path`` (relative to the run folder); ``setup`` for what precedes every stage."""
    if path in ("config.yaml", "principles.yaml", "constitutions.jsonl"):
        return "setup"
    match = re.match(r"iter_(\d+)/(generations|trainer|checkpoint|eval_generations)", path)
    if not match:
        return None  # state.json, metrics.jsonl (checked apart), run.log, run.lock
    stage = {"generations": "generate", "trainer": "train", "checkpoint": "train", "eval_generations": "evaluate"}
    return f"{stage[match.group(2)]}_{match.group(1)}"


def snapshot(run: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(run).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}


def comparable(run: Path, path: str) -> object:
    """What of file ``path`` must equal between two runs: the bytes, less what names the folder or the clock."""
    data = (run / path).read_bytes()
    if path.endswith("training_args.bin"):
        return None  # the pickled arguments hold the run folder's path
    if path == "metrics.jsonl":  # `model` names iteration t's checkpoint, by the path the run folder was given
        return re.sub(rb'"model": "[^"]*(iter_\d+/checkpoint)"', rb'"model": "\1"', data)
    if path.endswith("trainer_state.json"):
        state = json.loads(data)
        state["log_history"] = [{k: v for k, v in r.items() if not TIMINGS.search(k)} for r in state["log_history"]]
        return state
    return data


def assert_same_run(run: Path, reference: Path) -> None:
    ours = {p for p in snapshot(run) if p not in ("run.log", "run.lock")}
    theirs = {p for p in snapshot(reference) if p not in ("run.log", "run.lock")}
    assert ours == theirs  # nothing left over (.tmp, .partial, torn checkpoints), nothing missing
    for path in sorted(theirs):
        assert comparable(run, path) == comparable(reference, path), f"{path} differs from the uninterrupted run's"


def assert_finished_work_kept(before: dict, done: list[str], after: dict, metrics_before: list[dict], run: Path):
    """Files of the stages finished before the resume are neither rewritten nor changed; nor are their metrics."""
    for path, (stamp, data) in before.items():
        if stage_of(path) == "setup" or stage_of(path) in done:
            assert after.get(path) == (stamp, data), f"{path} was rewritten, but its stage had finished"
    evaluated = {int(s.split("_")[1]) for s in done if s.startswith("evaluate_")}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kept = [m for m in metrics_before if m["iteration"] in evaluated]
    assert [m for m in metrics if m["iteration"] in evaluated] == kept


def test_killed_anywhere_the_resumed_run_equals_an_uninterrupted_one(start_sami_run, reference_run, tmp_path):
    run, name, checkpoint_1 = tmp_path / "run", "run", {}
    for index, (fault, next_name) in enumerate([*KILLS, ("none", None)]):
        before = snapshot(run) if run.exists() else {}
        done = json.loads((run / "state.json").read_text())["done"] if (run / "state.json").exists() else []
        metrics_before = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] if done else []
        process = start_sami_run(fault, name.format(tmp=tmp_path), *(["--resume", "true"] if index else []),
                                 cwd=tmp_path)
        _, err = process.communicate(timeout=300)
        if fault == "none":
            assert process.returncode == 0, err[-3000:]
        else:
            assert process.returncode == -9 and f"killed at {fault}" in err, err[-3000:]
        assert_finished_work_kept(before, done, snapshot(run), metrics_before, run)
        if index:
            check_what_the_resume_removed(KILLS[index - 1][0], err)
        torn_weights = fault.startswith(("trainer_weights", "final_save"))
        assert bool(list(run.rglob(".tmp*"))) == torn_weights and not list(run.rglob("*.partial"))
        if fault == "training:2:1":
            checkpoint_1 = {p: v for p, v in snapshot(run).items() if p.startswith("iter_2/trainer/checkpoint-1/")}
        if checkpoint_1:  # training resumed from checkpoint-1 (never rewritten), it did not start over
            assert {p: v for p, v in snapshot(run).items() if p in checkpoint_1} == checkpoint_1
        if next_name and MOVED in next_name and run != tmp_path / MOVED:
            (tmp_path / MOVED).parent.mkdir()
            run = run.rename(tmp_path / MOVED)
        name = next_name

    assert_same_run(run, reference_run)
    assert json.loads((run / "state.json").read_text())["done"] == [
        "evaluate_0", "generate_1", "train_1", "evaluate_1", "generate_2", "train_2", "evaluate_2"
    ]


def check_what_the_resume_removed(fault: str, err: str) -> None:
    """The log of the process that resumed after ``fault`` names what the killed one left half-written."""
    if fault == "trainer_state:1:1":
        assert re.search(r"iter_1/trainer/checkpoint-1 is incomplete .*; deleting it", err), err[-3000:]
    if fault == "trainer_weights:2:2":
        assert "iter_2/trainer/checkpoint-2/.tmpKi11d: deleting a temporary file" in err, err[-3000:]
        assert "iter_2/trainer/checkpoint-2 is incomplete" in err
    if fault == "final_save:2":
        assert "iter_2/checkpoint/.tmpKi11d: deleting a temporary file" in err, err[-3000:]


def test_a_second_run_on_the_folder_is_refused_and_the_first_is_unharmed(start_sami_run, reference_run, tmp_path):
    """Two `sami run` on one folder: the second refuses at once (with or without --resume), naming the folder and
    the pid of the first, which finishes as if it had been alone."""
    run, go = tmp_path / "run", tmp_path / "go"
    first = start_sami_run(f"pause_after_stage:evaluate_0:{go}", run)
    try:
        while "paused" not in first.stderr.readline():
            assert first.poll() is None, first.stderr.read()[-3000:]
        for resume in (["--resume", "true"], []):
            second = start_sami_run("none", run, *resume)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 2, err[-3000:]
            assert f"error: {run} is in use by another sami process (pid {first.pid} on " in err
            assert "Traceback" not in err
    finally:
        go.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert_same_run(run, reference_run)
