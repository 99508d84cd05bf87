"""`sami train`: SAMI on a generations file, starting from a base model, saved as a plain HF checkpoint.

Full fine-tuning with the paper's settings (lr 5e-7, constant schedule, mean log-probs, rows + columns)::

    sami train --generations runs/demo/iter_1/generations.jsonl --model smollm2-135m \\
        --output_dir runs/demo/iter_1/checkpoint --max_steps 2 \\
        --per_device_train_batch_size 8 --gradient_accumulation_steps 16

LoRA on all linear layers, merged into the saved checkpoint::

    sami train --generations generations.jsonl --model mistralai/Mistral-7B-v0.1 --output_dir out \\
        --use_lora true --lora_r 16 --lora_alpha 32 --learning_rate 1e-5 --gradient_checkpointing true

Resume an interrupted run (with ``--save_strategy steps``) from its newest ``checkpoint-N``::

    sami train --config train.yaml --resume_from_checkpoint last

A YAML file of flat keys (any flag's name; or a shipped recipe name); flags win::

    sami train --config train.yaml --learning_rate 1e-6

Several GPUs (DDP, FSDP or DeepSpeed: docs/training.md)::

    accelerate launch --config_file examples/accelerate/fsdp2.yaml -m sami.cli train --config train.yaml

The base model (--model) is loaded in float32 (fp32 master weights; --bf16 autocasts). Every
``SAMIConfig`` / ``TrainingArguments`` field is a flag (``sami train --help``). The checkpoint
folder gets ``trainer_state.json`` with every logged metric (``mi/bound``, ``accuracy/rows``, ...).
"""

from __future__ import annotations

import logging

from sami.config.args import ModelArgs
from sami.config.commands import TrainDataArgs, require_output_dir
from sami.config.parser import SamiParser
from sami.training.config import SAMIConfig

logger = logging.getLogger(__name__)


def make_parser() -> SamiParser:
    return SamiParser([ModelArgs, TrainDataArgs, SAMIConfig], prog="sami train", description=__doc__)


def parse_args(parser: SamiParser, argv: list[str] | None = None) -> tuple[ModelArgs, TrainDataArgs, SAMIConfig]:
    """Parse ``argv``: the ``--config`` YAML sets defaults, the flags override them; ``--output_dir`` is required."""
    model_args, data_args, config = parser.parse_args_and_config(argv)
    require_output_dir(parser, argv, "where the checkpoint goes")
    return model_args, data_args, config


def main(argv: list[str] | None = None) -> int:
    model_args, data_args, config = parse_args(make_parser(), argv)

    from sami.training.trainer import train_sami

    resume = config.resume_from_checkpoint  # a checkpoint folder, or "last" for the newest in output_dir
    path = train_sami(
        model_args.model,
        data_args.generations,
        config,
        eval_records=data_args.eval_generations,
        resume=True if resume in ("last", "true", "True") else (resume or False),
    )
    logger.info("saved the trained model to %s", path)
    return 0
