"""Two SAMI training steps (and an evaluation) on a tiny model, run alone or under a launcher.

    export PYTHONPATH=tests  # for tests/helpers.py
    python tests/training/ddp_worker.py OUT 4                                         # 1 process, batch 4
    accelerate launch --multi_gpu --num_processes 2 tests/training/ddp_worker.py OUT 2  # 2 processes x batch 2
    accelerate launch --config_file fsdp.yaml tests/training/ddp_worker.py OUT 2 --checkpoint CKPT  # FSDP
    accelerate launch --multi_gpu --num_processes 2 tests/training/ddp_worker.py OUT 2 --kl_coef 1 --use_lora

With CKPT (a checkpoint folder) the trainer gets the spec and loads it itself (sami.models.load_for_training).
The main process writes OUT/result.pt: the logged loss, the evaluation metrics, the updated weights (the
full state dict, gathered under FSDP) and, per process, where the model was loaded and how many bytes of
parameters it holds once prepared. test_training_distributed.py checks that the runs agree.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from accelerate.utils import gather_object
from helpers import make_records, tiny_model
from transformers import TrainerCallback

from sami.models import load_tokenizer, training_placement
from sami.training import SAMIConfig, SAMITrainer


def _param_bytes(model) -> tuple[int, int]:
    """(bytes of the parameters this process holds, bytes of the full parameters); DTensor shards count locally."""
    local = full = 0
    for p in model.parameters():
        held = p.to_local() if hasattr(p, "to_local") else p
        local += held.numel() * held.element_size()
        full += p.numel() * p.element_size()  # a DTensor's numel is the global one
    return local, full


class _ParamBytes(TrainerCallback):
    """Records ``_param_bytes`` of the model once the Trainer has prepared (under FSDP: sharded) it."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.local, self.full = _param_bytes(model)


def _fsdp_on_cpu(args: SAMIConfig) -> None:
    """Let accelerate run FSDP over this CPU (gloo) process group.

    ``AcceleratorState`` attaches the FSDP plugin only to GPU-like process groups (MULTI_GPU, MULTI_XPU, ...), never
    to MULTI_CPU; relabelled before the Trainer builds its Accelerator, the gloo group on the CPU is prepared with
    FSDP2 exactly as a GPU one (``fully_shard`` shards on the CPU mesh; the device stays the CPU).
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    assert args.device.type == "cpu"  # sets up the gloo process group (use_cpu)
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and PartialState().num_processes > 1:
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU


def main(
    out: str, per_device_batch: int, checkpoint: str | None = None, kl_coef: float = 0.0, use_lora: bool = False
) -> None:
    tokenizer = load_tokenizer("smollm2-135m")
    principles = ["concise", "comprehensive", "polite"]
    args = SAMIConfig(
        output_dir=str(Path(out) / "trainer"),
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        max_steps=2,  # a second step: what runs only on the first one (lazy init, warm-up) cannot hide a failure
        optim="sgd",
        learning_rate=1.0,  # SGD steps at lr 1: the update is the (averaged) gradient itself
        max_grad_norm=0.0,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
        kl_coef=kl_coef,  # > 0: the reference is a frozen copy, or under LoRA the model with its adapter disabled
        use_lora=use_lora,
        lora_r=4,
        lora_alpha=64,  # scale 16: steps of SGD at lr 1 large enough for the KL to show
    )
    _fsdp_on_cpu(args)
    trainer = SAMITrainer(
        checkpoint if checkpoint is not None else tiny_model(vocab_size=len(tokenizer), tie_word_embeddings=True),
        args,
        train_dataset=make_records(4, principles=principles),
        eval_dataset=make_records(4, principles=principles),
        processing_class=tokenizer,
        callbacks=[measured := _ParamBytes()],
    )
    devices = sorted({p.device.type for p in trainer.model.parameters()})  # as loaded, before the prepare step
    loaded = {"placement": training_placement(args), "devices": devices}
    if checkpoint is not None:  # did this process read the weights (before the prepare step)?
        from safetensors.torch import load_file

        saved = load_file(Path(checkpoint) / "model.safetensors")
        loaded["read_checkpoint"] = all(torch.equal(p, saved[n]) for n, p in trainer.model.named_parameters())
    trainer.train()
    metrics = trainer.evaluate()
    accelerator = trainer.accelerator
    processes = gather_object([{**loaded, "local_bytes": measured.local, "full_bytes": measured.full}])  # rank order
    state = accelerator.get_state_dict(trainer.model)  # collective under FSDP: the full weights on the main process
    if accelerator.is_main_process:
        names = [n for n, _ in accelerator.unwrap_model(trainer.model).named_parameters()]
        result = {
            "world_size": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type),
            "loss": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "mi_bound": [h["mi/bound"] for h in trainer.state.log_history if "mi/bound" in h],
            "kl": [h["kl"] for h in trainer.state.log_history if "kl" in h],
            "eval": metrics,
            "params": {n: state[n].detach().cpu().clone() for n in names},
            "processes": processes,
        }
        torch.save(result, Path(out) / "result.pt")
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("per_device_batch", type=int)
    parser.add_argument("--checkpoint")
    parser.add_argument("--kl_coef", type=float, default=0.0)
    parser.add_argument("--use_lora", action="store_true")
    cli = parser.parse_args()
    main(cli.out, cli.per_device_batch, cli.checkpoint, cli.kl_coef, cli.use_lora)
