"""Fixtures of the fault-injection tests: `sami run` on the tiny model as a real process, and one uninterrupted run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("fault_driver.py")


@pytest.fixture(scope="module")
def start_sami_run(tiny_model_dir):
    """``start_sami_run(fault, run_dir, *flags, cwd=...)``: a ``sami run`` process on the tiny model that dies at
    ``fault`` (tests/pipeline/fault_driver.py; ``"none"`` runs to the end). Two iterations of 1 and 2 optimiser
    steps, a checkpoint per step, one query per generation call; sampled (temperature 1), so that a seed that
    changed would change the records."""

    started = []

    def start(fault: str, run_dir: str | Path, *flags: str, cwd: Path | None = None) -> subprocess.Popen:
        argv = [
            "--model", str(tiny_model_dir), "--principles", "hh", "--queries", "dialogue",
            "--max_train_queries", "8", "--max_eval_queries", "3", "--max_new_tokens", "4", "--temperature", "1.0",
            "--generation_dtype", "float32", "--generation_batch_size", "2", "--drop_identical", "false",
            "--drop_truncated", "none", "--iterations", "2", "--initial_steps", "1", "--steps_growth", "1",
            "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--use_cpu", "true",
            "--save_strategy", "steps", "--save_steps", "1", "--output_dir", str(run_dir), *flags,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
        started.append(subprocess.Popen([sys.executable, str(DRIVER), fault, *argv], cwd=cwd, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return started[-1]

    yield start
    for process in started:  # a test that failed midway leaves none running
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def reference_run(start_sami_run, tmp_path_factory) -> Path:
    """An uninterrupted run: what every interrupted and resumed run must end as."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    process = start_sami_run("none", run_dir)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return run_dir
