"""Does the loss temperature change what the recipe's iteration 1 learns? The same data, several temperatures.

    python benchmarks/loss_temperature.py --generations runs/effect/iter_1/generations.jsonl   # ~3 min per row, 2 cores
    python benchmarks/loss_temperature.py --generations runs/effect/iter_1/generations.jsonl --temperatures 1 0.25 4

Trains the effect recipe's iteration 1 (``effect_cpu``: SmolLM2-135M-Instruct, LoRA rank 16 on every linear
layer, AdamW at lr 1e-3, 2 steps of 8 queries) on one file of generation records, once per loss temperature,
and prints how far each run's update of the LoRA weights lies from the first temperature's (their relative
L2 distance and their cosine), beside the first temperature with the same pairs in another order: the noise
to judge it by. At the margins SAMI starts from (hundredths of a nat) the softmaxes are near uniform, so a
temperature T scales the gradient by about 1/T, which Adam's update ignores; what is left is the change of
the gradient's direction (docs/effect.md, "The other levers").
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from sami.models import load_model
from sami.training import SAMIConfig, SAMITrainer


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", required=True, help="A run's iter_1/generations.jsonl")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5, 2.0], help="The first is the reference")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def adapter_update(model_spec: str, generations: str, temperature: float, seed: int, data_seed: int) -> torch.Tensor:
    """How the recipe's iteration-1 training at ``temperature`` moves the LoRA weights, flattened."""
    model, tokenizer = load_model(model_spec, dtype="float32")
    with tempfile.TemporaryDirectory() as scratch:
        config = SAMIConfig(
            output_dir=scratch, use_lora=True, learning_rate=1e-3, max_steps=2, per_device_train_batch_size=4,
            gradient_accumulation_steps=2, loss_temperature=temperature, seed=seed, data_seed=data_seed,
            disable_tqdm=True,
            dataloader_pin_memory=False, log_level="error",
        )
        trainer = SAMITrainer(model, config, train_dataset=generations, processing_class=tokenizer)
        start = torch.cat([p.detach().flatten() for n, p in trainer.model.named_parameters() if "lora_" in n])
        trainer.train()
    return torch.cat([p.detach().flatten() for n, p in trainer.model.named_parameters() if "lora_" in n]) - start


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    first = args.temperatures[0]
    updates = {f"{t:g}": adapter_update(args.model, args.generations, t, args.seed, args.seed) for t in args.temperatures}
    # the scale to judge by: the first temperature with the same pairs in another order (docs/effect.md)
    updates[f"{first:g}, the other order"] = adapter_update(args.model, args.generations, first, args.seed, args.seed + 1)
    reference = updates[f"{first:g}"].double()
    print(f"\nThe LoRA update of 2 steps, against loss temperature {first:g} ({args.generations})\n")
    print("| loss temperature | update norm | relative L2 distance | cosine |")
    print("|---:|---:|---:|---:|")
    for t, update in updates.items():
        update = update.double()
        distance = ((update - reference).norm() / reference.norm()).item()
        cosine = torch.nn.functional.cosine_similarity(update, reference, dim=0).item()
        print(f"| {t} | {update.norm().item():.4f} | {distance:.4f} | {cosine:.4f} |")


if __name__ == "__main__":
    main()
