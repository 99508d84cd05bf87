"""`sami train`: SAMI on a generations file, starting from a base model, saved as a plain HF checkpoint.

Full fine-tuning with the paper's settings (lr 5e-7, constant schedule, mean log-probs, rows + columns)::

    sami train --generations runs/demo/iter_1/generations.jsonl --model smollm2-135m \\
        --output_dir runs/demo/iter_1/checkpoint --max_steps 2 \\
        --per_device_train_batch_size 8 --gradient_accumulation_steps 16

LoRA on all linear layers, merged into the saved checkpoint; QLoRA adds 4-bit base weights (bitsandbytes, a GPU)::

    sami train --generations generations.jsonl --model mistralai/Mistral-7B-v0.1 --output_dir out \\
        --use_lora true --lora_r 16 --lora_alpha 32 --learning_rate 1e-5 --gradient_checkpointing true
    sami train --generations generations.jsonl --model mistralai/Mistral-7B-v0.1 --output_dir out \\
        --use_lora true --load_in_4bit true --attn_implementation sdpa --model_revision main

--generations takes a generations JSONL, a folder written by ``datasets``' ``save_to_disk``, a data folder
(parquet/JSONL files) or a hub dataset id; records the generation filters dropped are skipped::

    sami train --generations my-org/sami-generations --model smollm2-135m --output_dir out --max_steps 2

Push the saved model to the Hub with its SAMI model card (tags, principles, training log, this command;
docs/hub.md); with LoRA, --merge_lora_on_save chooses merged weights (default) or the adapter::

    sami train --generations generations.jsonl --model smollm2-135m --output_dir out --max_steps 2 \\
        --push_to_hub true --hub_model_id me/sami-smollm2

Resume an interrupted run (with ``--save_strategy steps``) from its newest ``checkpoint-N``::

    sami train --config train.yaml --resume_from_checkpoint last

A YAML file of flat keys (any flag's name; or a shipped recipe name); flags win::

    sami train --config train.yaml --learning_rate 1e-6

Several GPUs (DDP, FSDP or DeepSpeed: docs/training.md), with a config that ships with sami (ddp, fsdp2,
fsdp2_offload, deepspeed_zero3) or your own; the command re-launches itself under ``accelerate launch``::

    sami train --config train.yaml --accelerate_config fsdp2 --num_processes 4
    accelerate launch --config_file my_accelerate.yaml -m sami.cli train --config train.yaml

The base model (--model) is loaded in float32 unless --dtype says otherwise (fp32 master weights; --bf16
autocasts). Every ``SAMIConfig`` / ``TrainingArguments`` field is a flag (``sami train --help``). The
checkpoint folder gets ``trainer_state.json`` with every logged metric (``mi/bound``, ``accuracy/rows``, ...).
"""

from __future__ import annotations

import logging

from sami.config.args import LaunchArgs, ModelArgs
from sami.config.commands import TrainDataArgs, require_output_dir
from sami.config.parser import SamiParser
from sami.launch import launch_args, relaunch
from sami.training.config import SAMIConfig

logger = logging.getLogger(__name__)


def make_parser() -> SamiParser:
    return SamiParser([ModelArgs, TrainDataArgs, SAMIConfig, LaunchArgs], prog="sami train", description=__doc__)


def parse_args(parser: SamiParser, argv: list[str] | None = None) -> tuple[ModelArgs, TrainDataArgs, SAMIConfig]:
    """Parse ``argv``: the ``--config`` YAML sets defaults, the flags override them; ``--output_dir`` is required.

    The launch settings (``--accelerate_config``, ``--num_processes``) are checked here and read with
    :func:`sami.launch.launch_args`.
    """
    model_args, data_args, config, _ = parser.parse_args_and_config(argv)
    require_output_dir(parser, argv, "where the checkpoint goes")
    model_args.options().check_training(config.use_lora)
    return model_args, data_args, config


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    model_args, data_args, config = parse_args(parser, argv)
    status = relaunch("train", argv, launch_args(parser, argv))
    if status is not None:
        return status

    from sami.hub import invocation
    from sami.models import load_for_training
    from sami.record_sources import EVAL_SPLITS, TRAIN_SPLITS
    from sami.training import SAMIDataset
    from sami.training.trainer import train_sami

    records = SAMIDataset(data_args.generations, splits=TRAIN_SPLITS)
    eval_records = SAMIDataset(data_args.eval_generations, splits=EVAL_SPLITS) if data_args.eval_generations else None
    # off the accelerator under FSDP/ZeRO-3 (the trainer shards it), else on the process's device
    model, tokenizer = load_for_training(
        model_args.model, config, dtype=model_args.training_dtype, options=model_args.options()
    )
    resume = config.resume_from_checkpoint  # a checkpoint folder, or "last" for the newest in output_dir
    path = train_sami(
        model,
        records,
        config,
        tokenizer=tokenizer,
        eval_records=eval_records,
        resume=True if resume in ("last", "true", "True") else (resume or False),
        command=invocation("train", argv),
        base_model=model_args.model,
    )
    logger.info("saved the trained model to %s", path)
    return 0
