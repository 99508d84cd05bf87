"""Two CPU processes (accelerate launch, gloo) take the same steps as one process with the same global batch:
under DDP, and under FSDP2 with the model loaded from a checkpoint the way sami loads it for sharded training."""

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


def _launcher(config_file: Path | None = None) -> list[str]:
    """``accelerate launch`` with 2 processes (DDP, or what ``config_file`` says); without GPUs they run on CPU."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        if config_file is not None:
            pytest.skip("the accelerate command is not installed")
        port = str(_free_port())
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    if config_file is not None:
        return [accelerate, "launch", "--config_file", str(config_file), "--main_process_port", str(_free_port())]
    # --multi_gpu selects the torch.distributed launcher (--cpu would need mpirun); the worker sets use_cpu
    return [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]


def _run_two(out: Path, *worker_args: str, config_file: Path | None = None) -> None:
    """Run ddp_worker.py under the launcher with 2 processes x batch 2."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [*_launcher(config_file), str(HERE / "ddp_worker.py"), str(out), "2", *worker_args]
    run = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def _assert_same_step(one: dict, two: dict) -> None:
    """The same logged losses, evaluation metrics and updated weights (to 1e-6) from 1 and 2 processes."""
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert len(one["loss"]) == len(two["loss"]) == 2  # both steps ran
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-6)
    assert two["kl"] == pytest.approx(one["kl"], rel=1e-4, abs=1e-9)
    assert two["mi_bound"] == pytest.approx(one["mi_bound"], abs=1e-6)
    for key in ("eval_loss", "eval_mi/bound", "eval_accuracy/rows", "eval_length/response"):
        assert two["eval"][key] == pytest.approx(one["eval"][key], abs=1e-6), key
    for name, value in one["params"].items():
        torch.testing.assert_close(two["params"][name], value, atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow  # two launched processes plus one in-process run: about 20-30 s on 2 cores
def test_two_processes_match_one_process(tmp_path, tokenizer):
    _run_two(tmp_path / "two")

    sys.path.insert(0, str(HERE))
    import ddp_worker

    ddp_worker.main(str(tmp_path / "one"), 4)  # this process, no launcher: world size 1, batch 4

    one = torch.load(tmp_path / "one" / "result.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    assert two["distributed_type"] == "DistributedType.MULTI_CPU"  # really DDP over gloo
    _assert_same_step(one, two)


@pytest.mark.slow  # two launched processes plus one in-process run: about 20-30 s on 2 cores
@pytest.mark.parametrize("use_lora", [False, True], ids=["frozen-copy", "adapter-disabled"])
def test_kl_penalty_under_two_processes_matches_one_process(tmp_path, tokenizer, use_lora):
    """The KL reference under DDP: a frozen copy of the starting weights, or the model with its adapter disabled."""
    flags = ["--kl_coef", "1.0", *(["--use_lora"] if use_lora else [])]
    _run_two(tmp_path / "two", *flags)

    sys.path.insert(0, str(HERE))
    import ddp_worker

    ddp_worker.main(str(tmp_path / "one"), 4, kl_coef=1.0, use_lora=use_lora)

    one = torch.load(tmp_path / "one" / "result.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    assert two["distributed_type"] == "DistributedType.MULTI_CPU"
    assert one["kl"][0] == pytest.approx(0.0, abs=1e-7) and one["kl"][1] > 1e-5  # the second step has moved
    _assert_same_step(one, two)


# FSDP2, full shard, one unit per decoder layer, cpu-RAM-efficient loading, float32: sami/accelerate_configs/fsdp2.yaml
# on 2 processes without bf16. use_cpu stays false (true would select the single-process launcher); the worker
# sets use_cpu and lets accelerate apply FSDP to the gloo group (ddp_worker._fsdp_on_cpu).
FSDP2_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
mixed_precision: 'no'
num_machines: 1
num_processes: 2
machine_rank: 0
rdzv_backend: static
same_network: true
use_cpu: false
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_reshard_after_forward: true
  fsdp_offload_params: false
  fsdp_cpu_ram_efficient_loading: true
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_activation_checkpointing: false
"""


@pytest.mark.slow  # two launched processes plus one in-process run: about 25-35 s on 2 cores
def test_fsdp2_loads_sharded_and_matches_one_process(tmp_path, tokenizer, model_factory):
    """Under FSDP2 only the main process reads the checkpoint, none moves the model to its device, each holds
    half of the parameters once the Trainer has prepared the model, and the step equals the 1-process step."""
    checkpoint = tmp_path / "checkpoint"
    model_factory(seed=0).save_pretrained(checkpoint)  # the trainer gets the folder and loads it through sami
    tokenizer.save_pretrained(checkpoint)
    config = tmp_path / "fsdp2.yaml"
    config.write_text(FSDP2_CONFIG)
    _run_two(tmp_path / "two", "--checkpoint", str(checkpoint), config_file=config)

    sys.path.insert(0, str(HERE))
    import ddp_worker

    ddp_worker.main(str(tmp_path / "one"), 4, str(checkpoint))  # this process, no launcher: world size 1, batch 4

    one = torch.load(tmp_path / "one" / "result.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    assert two["distributed_type"] == "DistributedType.FSDP"
    main, other = two["processes"]
    # loading: the main process reads the checkpoint into CPU RAM, the other one reads nothing (its parameters
    # are unwritten CPU storage); neither puts the model on its device: the prepare step shards it
    assert (main["placement"], other["placement"]) == ("cpu", "empty")
    assert main["read_checkpoint"] and not other["read_checkpoint"]
    assert main["devices"] == other["devices"] == ["cpu"]
    (alone,) = one["processes"]
    assert alone["placement"] == "device" and alone["read_checkpoint"]
    # once prepared, each process holds half of the parameter bytes; one process holds them all
    assert alone["local_bytes"] == alone["full_bytes"] == main["full_bytes"]
    for process in two["processes"]:
        assert 0.45 <= process["local_bytes"] / process["full_bytes"] <= 0.6, process
    # the same step: the non-main process's parameters all came from the main process's broadcast
    _assert_same_step(one, two)


# ------------------------------------------------------------------ the loading decision, without a launcher


@pytest.mark.parametrize(
    "env, placement",
    [
        ({}, "device"),
        ({"ACCELERATE_USE_FSDP": "true"}, "cpu"),  # every process loads, the prepare step shards per unit
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}, "cpu"),  # the main process
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "cpu"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "device"),
    ],
)
def test_training_placement_follows_the_launch_environment(monkeypatch, env, placement):
    from sami.models import training_placement

    for name in ("ACCELERATE_USE_FSDP", "FSDP_CPU_RAM_EFFICIENT_LOADING", "ACCELERATE_USE_DEEPSPEED",
                 "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert training_placement() == placement


def test_training_placement_other_processes_read_nothing(monkeypatch):
    import accelerate

    from sami.models import training_placement

    class NotMain:
        is_main_process = False

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    monkeypatch.setattr(accelerate, "PartialState", NotMain)
    assert training_placement() == "empty"
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    assert training_placement() == "cpu"


def test_empty_load_builds_the_model_without_its_weights(monkeypatch, tiny_model_dir):
    """'empty': real buffers, the head still tied, distinct CPU storage per parameter (accelerate maps by data_ptr)."""
    from transformers import AutoModelForCausalLM

    import sami.models.loading as loading

    monkeypatch.setattr(loading, "training_placement", lambda args=None: "empty")
    model, tokenizer = loading.load_for_training(str(tiny_model_dir))
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    params = dict(model.named_parameters())
    assert params.keys() == dict(reference.named_parameters()).keys()
    assert {p.device.type for p in params.values()} == {"cpu"}
    assert {p.dtype for p in params.values()} == {torch.float32}
    assert len({p.data_ptr() for p in params.values()}) == len(params)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == (
        reference.lm_head.weight is reference.model.embed_tokens.weight
    )
    for name, buffer in reference.named_buffers():  # the non-persistent rotary buffers are not broadcast
        torch.testing.assert_close(dict(model.named_buffers())[name], buffer, msg=name)
    assert tokenizer.pad_token_id is not None

    monkeypatch.setattr(loading, "training_placement", lambda args=None: "cpu")
    model, _ = loading.load_for_training(str(tiny_model_dir))
    for name, value in reference.state_dict().items():  # the main process: the checkpoint, in CPU RAM
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
