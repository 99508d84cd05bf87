"""`sami train`: SAMI on a generations file, starting from a base model, saved as a plain HF checkpoint.

Full fine-tuning with the paper's settings (lr 5e-7, constant schedule, mean log-probs, rows + columns)::

    sami train --generations runs/demo/iter_1/generations.jsonl --model smollm2-135m \\
        --output_dir runs/demo/iter_1/checkpoint --max_steps 2 \\
        --per_device_train_batch_size 8 --gradient_accumulation_steps 16

LoRA on all linear layers, merged into the saved checkpoint::

    sami train --generations generations.jsonl --model mistralai/Mistral-7B-v0.1 --output_dir out \\
        --use_lora --lora_r 16 --lora_alpha 32 --learning_rate 1e-5 --gradient_checkpointing

Resume an interrupted run (with ``--save_strategy steps``) from its newest ``checkpoint-N``::

    sami train --config train.yaml --resume_from_checkpoint last

A YAML file of flat keys (any flag's name; or a shipped recipe name); flags win::

    sami train --config train.yaml --learning_rate 1e-6

Several GPUs (DDP, FSDP or DeepSpeed: docs/training.md)::

    accelerate launch --config_file examples/accelerate/fsdp2.yaml -m sami.scripts.train --config train.yaml

Every ``SAMIConfig`` / ``TrainingArguments`` field is a flag (``sami train --help``). The checkpoint
folder gets ``trainer_state.json`` with every logged metric (``mi/bound``, ``accuracy/rows``, ...).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import yaml

from sami.config.parser import SamiParser
from sami.models.embedded import DEFAULT_MODEL
from sami.training.config import SAMIConfig

logger = logging.getLogger("sami.train")


@dataclass
class TrainScriptArguments:
    """What to train on and from.

    Args:
        generations: the generations JSONL (``sami generate`` output); records dropped by its filters are skipped.
        model: base model spec: an embedded name, a checkpoint folder, a ``.gguf`` file or a hub id.
            Loaded in float32 (fp32 master weights; ``--bf16`` autocasts).
        eval_generations: held-out generations to report ``eval_mi/bound`` etc. on after training.
    """

    generations: str | None = field(
        default=None, metadata={"help": "Generations JSONL to train on (`sami generate` output); required."}
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Base model: embedded name, checkpoint folder, .gguf file or hub id (loaded in float32)."},
    )
    eval_generations: str | None = field(
        default=None, metadata={"help": "Held-out generations JSONL; evaluated after training (eval_mi/bound, ...)."}
    )


def make_parser() -> SamiParser:
    """The parser over (TrainScriptArguments, SAMIConfig), with ``--config`` YAML (``sami.config.parser``)."""
    return SamiParser(
        (TrainScriptArguments, SAMIConfig),
        prog="sami train",
        description="Train a model with SAMI on generated data and save a Hugging Face checkpoint.",
    )


def parse_args(parser: SamiParser, argv: list[str] | None = None) -> tuple[TrainScriptArguments, SAMIConfig]:
    """Parse ``argv``: the ``--config`` YAML sets defaults, the flags override them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args, config = parser.parse_args_and_config(argv)
    if not script_args.generations:
        raise ValueError("give --generations (or generations in the --config file): the JSONL to train on")
    given = any(a.split("=")[0] in ("--output_dir", "--output-dir") for a in argv)
    if not given and parser.get_default("output_dir") is None:
        raise ValueError("give --output_dir (or output_dir in the --config file): where the checkpoint goes")
    return script_args, config


def main(argv: list[str] | None = None) -> int:
    """Run ``sami train``; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = make_parser()
    try:
        script_args, config = parse_args(parser, argv)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as error:
        print(f"sami train: error: {error}", file=sys.stderr)
        return 2

    from sami.models.embedded import EmbeddedModelMissing
    from sami.training.trainer import train_sami

    try:
        resume = config.resume_from_checkpoint  # a checkpoint folder, or "last" for the newest in output_dir
        path = train_sami(
            script_args.model,
            script_args.generations,
            config,
            eval_records=script_args.eval_generations,
            resume=True if resume in ("last", "true", "True") else (resume or False),
        )
    except (EmbeddedModelMissing, FileNotFoundError, ValueError) as error:
        print(f"sami train: error: {error}", file=sys.stderr)
        return 2
    logger.info("saved the trained model to %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
