"""Two CPU processes (accelerate launch, gloo) take the same step as one process with the same global batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launcher() -> list[str]:
    """``accelerate launch`` with 2 processes; on a machine without GPUs it runs them on CPU with gloo."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        port = str(_free_port())
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    # --multi_gpu selects the torch.distributed launcher (--cpu would need mpirun); the worker sets use_cpu
    return [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]


@pytest.mark.slow  # two launched processes plus one in-process run: about 20-30 s on 2 cores
def test_two_processes_match_one_process(tmp_path, tokenizer):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [*_launcher(), str(HERE / "ddp_worker.py"), str(tmp_path / "two"), "2"]
    run = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    sys.path.insert(0, str(HERE))
    import ddp_worker

    ddp_worker.main(str(tmp_path / "one"), 4)  # this process, no launcher: world size 1, batch 4

    one = torch.load(tmp_path / "one" / "result.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["distributed_type"] == "DistributedType.MULTI_CPU"  # really DDP over gloo
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-6)
    assert two["mi_bound"] == pytest.approx(one["mi_bound"], abs=1e-6)
    for key in ("eval_loss", "eval_mi/bound", "eval_accuracy/rows", "eval_length/response"):
        assert two["eval"][key] == pytest.approx(one["eval"][key], abs=1e-6), key
    for name, value in one["params"].items():
        torch.testing.assert_close(two["params"][name], value, atol=1e-6, rtol=0, msg=name)
