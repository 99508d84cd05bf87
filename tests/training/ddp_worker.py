"""One SAMI training step (and an evaluation) on a tiny model, run alone or under a launcher.

    python tests/training/ddp_worker.py OUT 4                                    # 1 process, batch 4
    accelerate launch --cpu --num_processes 2 tests/training/ddp_worker.py OUT 2  # 2 processes x batch 2

The main process writes OUT/result.pt: the logged loss, the evaluation metrics and the updated
weights. test_training_distributed.py checks that both runs agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from training_helpers import load_test_tokenizer, make_records, tiny_model

from sami.training import SAMIConfig, SAMITrainer


def main(out: str, per_device_batch: int) -> None:
    tokenizer = load_test_tokenizer()
    principles = ["concise", "comprehensive", "polite"]
    args = SAMIConfig(
        output_dir=str(Path(out) / "trainer"),
        per_device_train_batch_size=per_device_batch,
        per_device_eval_batch_size=per_device_batch,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,  # one SGD step at lr 1: the update is the (averaged) gradient itself
        max_grad_norm=0.0,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
    )
    trainer = SAMITrainer(
        tiny_model(len(tokenizer), seed=0),
        args,
        train_dataset=make_records(4, principles=principles),
        eval_dataset=make_records(4, principles=principles),
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        result = {
            "world_size": trainer.accelerator.num_processes,
            "distributed_type": str(trainer.accelerator.distributed_type),
            "loss": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "mi_bound": [h["mi/bound"] for h in trainer.state.log_history if "mi/bound" in h],
            "eval": metrics,
            "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()},
        }
        torch.save(result, Path(out) / "result.pt")
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
