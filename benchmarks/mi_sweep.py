"""Does SAMI training raise the MI bound on held-out pairs? A sweep over learning rate and steps.

    python benchmarks/mi_sweep.py --train runs/demo/iter_1/generations.jsonl \
        --eval runs/demo/iter_0/eval_generations.jsonl --learning-rates 1e-5 3e-5 1e-4 --steps 2 6

Trains from the base model on one iteration's data and scores the base model's held-out responses
(fixed pairs, so only the model changes) with the trained model: the InfoNCE bound, per direction,
and the diagonal accuracy. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile

from transformers import TrainerCallback

from sami.generation import kept_records
from sami.jsonl import read_jsonl
from sami.models import load_model
from sami.objective import AGGREGATIONS
from sami.training import SAMIConfig, SAMITrainer
from sami.training.trainer import evaluate_sami

KEYS = ("eval_mi/bound", "eval_mi/bound_rows", "eval_mi/bound_cols", "eval_accuracy/rows", "eval_accuracy/cols")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-5, 3e-5, 1e-4])
    parser.add_argument("--steps", nargs="+", type=int, default=[2, 6])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--aggregation", default="mean", choices=AGGREGATIONS)
    args = parser.parse_args()

    train = kept_records(args.train)
    held_out = [r for r in read_jsonl(args.eval, what="generations file") if all(x.strip() for x in r["responses"])]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = evaluate_sami(args.model, held_out, SAMIConfig(output_dir=scratch, aggregation=args.aggregation))
        rows.append(("base", 0, base))
        for lr in args.learning_rates:
            model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
            config = SAMIConfig(output_dir=scratch, learning_rate=lr, max_steps=max(args.steps), aggregation=args.aggregation,
                                per_device_train_batch_size=args.batch, use_cpu=True, logging_steps=1)
            trainer = SAMITrainer(model, config, train_dataset=train, eval_dataset=held_out, processing_class=tokenizer)
            trainer.add_callback(_EvaluateAt(set(args.steps), trainer, rows, lr))
            trainer.train()
    print(f"\n{args.model}, {len(train)} training records, {len(held_out)} held-out pairs, {args.aggregation} log-probs\n")
    print("| learning rate | steps | " + " | ".join(k.removeprefix("eval_") for k in KEYS) + " |")
    print("|---|---:|" + "---:|" * len(KEYS))
    for lr, steps, metrics in rows:
        print(f"| {lr} | {steps} | " + " | ".join(f"{metrics[k]:.4f}" for k in KEYS) + " |")


class _EvaluateAt(TrainerCallback):
    """Score the held-out pairs after the listed optimiser steps."""

    def __init__(self, steps, trainer, rows, lr):
        self.steps, self.trainer, self.rows, self.lr = steps, trainer, rows, lr

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            self.rows.append((self.lr, state.global_step, self.trainer.evaluate()))
            self.trainer.model.train()


if __name__ == "__main__":
    main()
