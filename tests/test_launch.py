"""`--accelerate_config NAME`: the configs ship inside the package, a name resolves to one of them, and the
command re-launches itself under `accelerate launch` exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_records

import sami
from sami.config.args import LaunchArgs
from sami.errors import ConfigError
from sami.jsonl import write_jsonl
from sami.launch import accelerate_config_names, launch_command, relaunch, resolve_accelerate_config

PACKAGED = ("ddp", "deepspeed_zero3", "fsdp2", "fsdp2_offload")


def test_names_resolve_to_configs_inside_the_installed_package():
    package = Path(sami.__file__).parent
    assert set(PACKAGED) <= set(accelerate_config_names())
    for name in PACKAGED:
        path = resolve_accelerate_config(name)
        assert path.parent == package / "accelerate_configs" and path.name == f"{name}.yaml"
        config = yaml.safe_load(path.read_text())
        assert config["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED") and config["num_processes"] == 8
    assert resolve_accelerate_config("fsdp2.yaml") == resolve_accelerate_config("fsdp2")
    assert yaml.safe_load(resolve_accelerate_config("fsdp2_offload").read_text())["fsdp_config"]["fsdp_offload_params"]


def test_a_path_is_used_as_it_is_and_an_unknown_name_lists_the_shipped_ones(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: 'NO'\n")
    assert resolve_accelerate_config(str(own)) == own
    with pytest.raises(ConfigError, match="ddp, deepspeed_zero3, fsdp2, fsdp2_offload"):
        LaunchArgs(accelerate_config="zero2")
    with pytest.raises(ConfigError, match="give --accelerate_config too"):
        LaunchArgs(num_processes=4)
    with pytest.raises(ConfigError, match="at least 1"):
        LaunchArgs(accelerate_config="ddp", num_processes=0)


def test_the_launch_command_drops_only_the_launch_flags():
    config = resolve_accelerate_config("fsdp2")
    argv = ["--config", "train.yaml", "--accelerate_config", "fsdp2", "--num_processes=4", "--max_steps", "3",
            "--accelerate_config=fsdp2"]
    assert launch_command("train", argv, config, 4) == [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "4",
        "-m", "sami.cli", "train", "--config", "train.yaml", "--max_steps", "3",
    ]
    tail = ["-m", "sami.cli", "run", "--config", "demo_cpu"]
    assert launch_command("run", ["--config", "demo_cpu"], config)[5:] == tail


def test_no_relaunch_without_the_flag_or_inside_a_launched_process(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert relaunch("train", [], LaunchArgs()) is None
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what accelerate launch sets in every process
    assert relaunch("train", ["--accelerate_config", "ddp"], LaunchArgs(accelerate_config="ddp")) is None


@pytest.mark.slow  # three interpreters import torch (sami, accelerate launch, the launched sami): 20-40 s on 2 cores
def test_sami_train_relaunches_itself_under_accelerate(tmp_path, tiny_model_dir):
    """A real `accelerate launch` (one CPU process): the YAML's accelerate_config is applied once, not again inside."""
    launch_config = tmp_path / "cpu.yaml"
    launch_config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: 'no'\n"
                             "num_machines: 1\nnum_processes: 1\nuse_cpu: true\n")
    out = tmp_path / "checkpoint"
    train_config = tmp_path / "train.yaml"
    train_config.write_text(yaml.safe_dump({
        "model": str(tiny_model_dir), "generations": str(write_jsonl(make_records(2), tmp_path / "g.jsonl")),
        "output_dir": str(out), "max_steps": 1, "per_device_train_batch_size": 2, "use_cpu": True,
        "disable_tqdm": True, "dataloader_pin_memory": False, "accelerate_config": str(launch_config),
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_MIXED_PRECISION", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, "-m", "sami.cli", "train", "--config", str(train_config)],
                         env={**env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sami: launching " in run.stderr and f"--config_file {launch_config}" in run.stderr
    assert "running under accelerate launch; --accelerate_config" in run.stderr  # the child did not launch again
    assert (out / "config.json").exists() and (out / "trainer_state.json").exists()
