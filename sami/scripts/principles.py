"""Write principles with a language model, or check a hand-written principle file.

    sami principles --task_description "summarise Reddit posts" --num_principles 4 --writer smollm2-135m -o principles.yaml
    sami principles --principles my_principles.yaml -o checked.yaml   # validate a hand-written file
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sami.config.args import PrincipleArgs
from sami.config.parser import SamiParser
from sami.principles import PrincipleSet, load_principles, save_principles

logger = logging.getLogger(__name__)


@dataclass
class OutputArgs:
    output: str = field(default="principles.yaml", metadata={"help": "Where to write the principle file.", "aliases": ["-o"]})
    seed: int = field(default=0, metadata={"help": "Seeds the writer's sampling."})


def obtain_principles(args: PrincipleArgs, seed: int = 0) -> PrincipleSet:
    """Load ``args.principles``, or have ``args.writer`` write them from ``args.task_description``."""
    if args.principles:
        return load_principles(args.principles)
    if not args.task_description:
        raise ValueError(
            "no principles given: pass --principles FILE (or a built-in name: hh, tldr, tldr_diverse, verifiable), "
            "or --task_description '...' to have the writer model write them"
        )
    from sami.models import load_model
    from sami.principles.writer import model_completer, write_principles

    model, tokenizer = load_model(args.writer, dtype="bfloat16")
    complete = model_completer(model, tokenizer, temperature=args.writer_temperature, seed=seed)
    principle_set, report = write_principles(
        args.task_description,
        args.num_principles,
        complete,
        max_rounds=args.writer_max_rounds,
        aspects=args.writer_aspects,
    )
    logger.info(
        "writer %s: %d principles from %d samples (%d malformed, %d duplicates)",
        args.writer, len(principle_set), report.samples, report.malformed, report.duplicates,
    )
    return PrincipleSet(principle_set.principles, task=principle_set.task, metadata={"writer": args.writer})


def make_parser() -> SamiParser:
    return SamiParser([PrincipleArgs, OutputArgs], prog="sami principles", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    principle_args, output_args = make_parser().parse_args_and_config(argv)
    principle_set = obtain_principles(principle_args, output_args.seed)
    path = save_principles(principle_set, output_args.output)
    for principle in principle_set:
        print(f"- {principle.name} [{principle.split}]\n    + {principle.definition}\n    - {principle.antithesis}")
    print(f"wrote {len(principle_set)} principles to {path}")
    return 0
