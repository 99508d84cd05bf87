"""Argument groups of one command each (the shared groups are in :mod:`sami.config.args`).

``--output`` is the one file a command writes, ``--output_dir`` the folder it writes and
``--run_dir`` an existing run it reads, in every command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from sami.errors import ConfigError

if TYPE_CHECKING:
    from sami.config.parser import SamiParser


@dataclass
class PrinciplesOutputArgs:
    """``sami principles``: where the principle file goes."""

    output: str = field(default="principles.yaml", metadata={"help": "The principle file to write (YAML)."})
    seed: int = field(default=0, metadata={"help": "Seeds the writer's sampling."})


@dataclass
class GenerateOutputArgs:
    """``sami generate``: which queries and principles, and where the records go."""

    output: str = field(default="generations.jsonl", metadata={"help": "Output JSONL (appended to; resumable)."})
    split: str = field(default="train", metadata={"help": "Query split: train, eval or all."})
    principle_split: Literal["train", "eval"] = field(
        default="train", metadata={"help": "Principles to build constitutions from: train or eval (held out)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds constitutions and sampling."})

    def __post_init__(self) -> None:
        check_split(self.split)


@dataclass
class TrainDataArgs:
    """``sami train``: the records to train on (the base model is ``--model``, the checkpoint ``--output_dir``)."""

    generations: str | None = field(
        default=None,
        metadata={"help": "Generations to train on: JSONL, datasets folder or hub id (owner/name[:config]), as "
                  "`sami generate` writes or pushes them; records its filters dropped are skipped. Required."},
    )
    eval_generations: str | None = field(
        default=None,
        metadata={"help": "Held-out generations (JSONL, datasets folder or hub id); evaluated after training "
                  "(eval_mi/bound, ...)."},
    )

    def __post_init__(self) -> None:
        if not self.generations:
            raise ConfigError("give --generations (or generations in the --config file): the JSONL, datasets folder "
                              "or hub id to train on")


@dataclass
class ReportArgs:
    """``sami report``: the run to report on and where the report goes."""

    run_dir: str | None = field(default=None, metadata={"help": "The run folder `sami run` wrote; required."})
    output_dir: str | None = field(default=None, metadata={"help": "Folder for report.md and its figures "
                                                                   "(default: RUN_DIR/report)."})
    examples: int = field(default=2, metadata={"help": "Judged pairs shown per baseline."})

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ConfigError("give --run_dir (or run_dir in the --config file): the folder `sami run` wrote")


def check_split(split: str) -> None:
    """Refuse a ``--split`` that names no query split (``test`` and ``validation`` mean ``eval``)."""
    from sami.data.common import QueryValueError, normalise_split

    try:
        normalise_split(split)
    except QueryValueError as error:
        raise ConfigError(f"--split {split}: {error}") from None


def require_output_dir(parser: SamiParser, argv: list[str] | None, what: str) -> None:
    """Refuse a command without ``--output_dir`` (flag or ``--config`` key).

    ``TrainingArguments`` would silently fall back to ``trainer_output/``; a run or a checkpoint
    should go where the user said. Call after ``parser.parse_args_and_config(argv)``, which turns
    the YAML keys into the parser's defaults.
    """
    namespace, _ = parser.parse_known_args(argv)
    if namespace.output_dir is None:
        raise ConfigError(f"give --output_dir (or output_dir in the --config file): {what}")
