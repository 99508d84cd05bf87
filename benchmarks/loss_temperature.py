"""Does the loss temperature change what the recipe's iteration 1 learns? The same data, several temperatures.

    python benchmarks/loss_temperature.py --generations runs/effect/iter_1/generations.jsonl   # ~3 min per row, 2 cores
    python benchmarks/loss_temperature.py --generations runs/effect/iter_1/generations.jsonl --temperatures 1 0.25 4

Trains a recipe's iteration 1 (``--config``, default ``effect_cpu``: SmolLM2-135M-Instruct, LoRA rank 16 on
every linear layer, AdamW at lr 1e-3, 2 steps of 8 queries, seed 0) on one file of generation records, once per loss temperature,
and prints how far each run's update of the LoRA weights lies from the first temperature's (their relative
L2 distance and their cosine), beside the first temperature with the same pairs in another order: the noise
to judge it by. At the margins SAMI starts from (hundredths of a nat) the softmaxes are near uniform, so a
temperature T scales the gradient by about 1/T, which Adam's update ignores; what is left is the change of
the gradient's direction (docs/effect.md, "The other levers").
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import torch

from sami.models import load_model
from sami.scripts.run import make_parser as run_parser
from sami.training import SAMIConfig, SAMITrainer


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", required=True, help="A run's iter_1/generations.jsonl")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5, 2.0], help="The first is the reference")
    parser.add_argument("--config", default="effect_cpu", help="The recipe whose model and training settings to use")
    return parser


def recipe(config: str) -> tuple[str, SAMIConfig, int]:
    """The recipe's model, training settings and iteration-1 steps, as ``sami run --config`` reads them."""
    model_args, *_, iteration_args, training_args, _, _, _ = run_parser().parse_args_and_config(
        ["--config", config, "--output_dir", "unused"]
    )
    return model_args.model, training_args, iteration_args.initial_steps


def lora_weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_" in n])


def adapter_update(model_spec: str, training_args: SAMIConfig, generations: str) -> torch.Tensor:
    """How training with ``training_args`` on ``generations`` moves the LoRA weights, flattened."""
    model, tokenizer = load_model(model_spec, dtype="float32")
    with tempfile.TemporaryDirectory() as scratch:
        args = dataclasses.replace(training_args, output_dir=scratch)
        trainer = SAMITrainer(model, args, train_dataset=generations, processing_class=tokenizer)
        start = lora_weights(trainer.model)
        trainer.train()
    return lora_weights(trainer.model) - start


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    model_spec, training_args, steps = recipe(args.config)
    first, seed = args.temperatures[0], training_args.seed

    def update(temperature: float, data_seed: int) -> torch.Tensor:
        run_args = dataclasses.replace(
            training_args, max_steps=steps, loss_temperature=temperature, data_seed=data_seed,
            disable_tqdm=True, dataloader_pin_memory=False, log_level="error",
        )
        return adapter_update(model_spec, run_args, args.generations)

    updates = {f"{t:g}": update(t, seed) for t in args.temperatures}
    # the scale to judge by: the first temperature with the same pairs in another order (docs/effect.md)
    updates[f"{first:g}, the other order"] = update(first, seed + 1)
    reference = updates[f"{first:g}"].double()
    print(f"\nThe LoRA update of {steps} steps, against loss temperature {first:g} ({args.generations})\n")
    print("| loss temperature | update norm | relative L2 distance | cosine |")
    print("|---:|---:|---:|---:|")
    for t, update in updates.items():
        update = update.double()
        distance = ((update - reference).norm() / reference.norm()).item()
        cosine = torch.nn.functional.cosine_similarity(update, reference, dim=0).item()
        print(f"| {t} | {update.norm().item():.4f} | {distance:.4f} | {cosine:.4f} |")


if __name__ == "__main__":
    main()
