"""The run folder: one process at a time, what a killed run leaves half-written, resume by any spelling."""

import json
import os
import subprocess
import sys

import pytest

from sami.errors import ConfigError
from sami.run_folder import RunFolder, RunInUseError

CONFIG = {"model": "tiny", "learning_rate": 1e-3, "seed": 0}

HOLD_THE_LOCK = """
import sys, time
from sami.run_folder import RunFolder
RunFolder(sys.argv[1]).start({"model": "tiny", "learning_rate": 1e-3, "seed": 0}, resume=False)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_is_refused_until_the_first_one_dies(tmp_path):
    """Two real processes: the second is refused at once, naming the folder and the holder's pid, with or
    without --resume; SIGKILL on the holder frees the folder (the kernel drops the flock)."""
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for resume in (True, False):
            with pytest.raises(RunInUseError, match=f"{root} is in use .*pid {holder.pid} on "):
                RunFolder(root).start(CONFIG, resume=resume)
        assert RunFolder(root).read_config() == CONFIG
    finally:
        holder.kill()  # SIGKILL: no clean-up in the holder
        holder.wait()
    RunFolder(root).start(CONFIG, resume=True)
    assert f"pid {os.getpid()} on " in (root / "run.lock").read_text()
    RunFolder(str(root) + "/").start(CONFIG, resume=True)  # the same process may start it again (in-process resume)


def test_released_lock_can_be_taken_by_another_process(tmp_path):
    root = tmp_path / "run"
    folder = RunFolder(root)
    folder.start(CONFIG, resume=False)
    lock = "import sys; from sami.run_folder import RunFolder; RunFolder(sys.argv[1]).lock()"
    take_lock = [sys.executable, "-c", lock, str(root)]
    refused = subprocess.run(take_lock, capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and f"pid {os.getpid()}" in refused.stderr
    folder.release()
    assert subprocess.run(take_lock, capture_output=True, text=True, check=False).returncode == 0


def test_the_same_folder_spelled_differently_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RunFolder("runs/a").start(CONFIG, resume=False)
    for spelling in ("runs/a/", str(tmp_path / "runs" / "a"), f"{tmp_path}/runs/./a/"):
        RunFolder(spelling).start(CONFIG, resume=True)
    (tmp_path / "runs" / "a").rename(tmp_path / "moved")
    RunFolder(tmp_path / "moved").start(CONFIG, resume=True)
    with pytest.raises(ConfigError, match=r"differ from the run's config.yaml: \['learning_rate'\]"):
        RunFolder("moved").start({**CONFIG, "learning_rate": 1e-4}, resume=True)


def test_resume_deletes_unfinished_atomic_writes(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.start(CONFIG, resume=False)
    orphans = [folder.root / "state.json.partial", folder.iteration(1).path / "generations.jsonl.partial"]
    for path in orphans:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"done": ["evalu')
    (folder.root / "state.json").write_text('{"done": []}')
    folder.start(CONFIG, resume=True)
    assert not any(path.exists() for path in orphans)
    assert (folder.root / "state.json").exists()


def _checkpoint(trainer_dir, step, state: str | None):
    path = trainer_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_torn_trainer_checkpoints_are_deleted_and_the_last_complete_one_resumes(tmp_path, caplog):
    iteration = RunFolder(tmp_path).iteration(1)
    trainer = iteration.trainer_dir
    complete = [_checkpoint(trainer, step, json.dumps({"global_step": step})) for step in (1, 2)]
    torn = [
        _checkpoint(trainer, 3, json.dumps({"global_step": 3})[:9]),  # killed while trainer_state.json was written
        _checkpoint(trainer, 4, None),  # killed before it (weights, optimizer or RNG state being written)
        _checkpoint(trainer, 5, json.dumps({"global_step": 4})),  # not this checkpoint's state
    ]
    (trainer / "checkpoint-6-notes").mkdir()  # not a checkpoint: left alone
    assert iteration.resumable_trainer_checkpoint() == complete[1]
    assert all(path.exists() for path in complete) and not any(path.exists() for path in torn)
    assert (trainer / "checkpoint-6-notes").exists()
    assert caplog.text.count("is incomplete") == 3 and "checkpoint-4" in caplog.text


def test_no_complete_trainer_checkpoint_means_training_from_the_start(tmp_path):
    iteration = RunFolder(tmp_path).iteration(1)
    assert iteration.resumable_trainer_checkpoint() is None  # no trainer/ folder yet
    torn = _checkpoint(iteration.trainer_dir, 1, "")
    assert iteration.resumable_trainer_checkpoint() is None and not torn.exists()


def test_temporary_weight_files_of_a_killed_save_are_deleted(tmp_path):
    iteration = RunFolder(tmp_path).iteration(1)
    checkpoint = _checkpoint(iteration.trainer_dir, 1, json.dumps({"global_step": 1}))
    iteration.checkpoint.mkdir()
    (iteration.checkpoint / "config.json").write_text("{}")
    orphans = [iteration.checkpoint / ".tmpAb12Cd", checkpoint / ".tmpXy34Zw"]
    for path in orphans:
        path.write_bytes(b"\0" * 100)
    iteration.clean_orphans()
    assert not any(path.exists() for path in orphans)
    assert (iteration.checkpoint / "config.json").exists() and (checkpoint / "model.safetensors").exists()


def test_metrics_of_a_rerun_evaluation_replace_those_a_killed_one_wrote(tmp_path):
    folder = RunFolder(tmp_path)
    folder.append_metrics({"iteration": 0, "mi/bound": 0.1})
    folder.append_metrics({"iteration": 1, "mi/bound": 0.2})  # killed before evaluate_1 was marked done
    folder.append_metrics({"iteration": 1, "mi/bound": 0.2})  # the resumed run evaluates it again
    folder.append_metrics({"iteration": 2, "mi/bound": 0.3})
    lines = [json.loads(line) for line in folder.metrics_path.read_text().splitlines()]
    assert lines == [{"iteration": 0, "mi/bound": 0.1}, {"iteration": 1, "mi/bound": 0.2}, {"iteration": 2, "mi/bound": 0.3}]
    assert folder.read_metrics() == lines
