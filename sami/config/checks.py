"""What each flag's value can be, checked when the command line is parsed, before any work.

A flag means the same in every command, so one table serves them all: :class:`~sami.config.parser.SamiParser`
checks every flag of its command that is listed here.

* :data:`BOUNDS`: the interval of a numeric flag (``None`` always passes: it means "no limit" or
  "the default"; a list is checked element by element). The ``TrainingArguments`` fields are here
  too: ``transformers`` accepts ``--gradient_accumulation_steps 0`` or a negative learning rate
  and fails minutes later, in the middle of a run.
* :data:`OUTPUT_FILES`, :data:`FOLDERS`, :data:`RECORD_SOURCES`: flags naming a file to write, a folder,
  or records to read (``--output`` a file, ``--output_dir`` and ``--run_dir`` folders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sami.record_sources import DATA_FILE_TYPES, SAVED_MARKERS


@dataclass(frozen=True)
class Bound:
    """An interval: ``low <= value`` (``low < value`` when ``low_open``), and likewise for ``high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in (0, 1]``."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"


def _number(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def at_least(low: float, why: str = "") -> Bound:
    return Bound(low=low, why=why)


def above(low: float, why: str = "") -> Bound:
    return Bound(low=low, low_open=True, why=why)


COUNT = at_least(1)
SEED = Bound(0, 2**32, high_open=True, why="numpy's seeds are 32-bit")
FRACTION = Bound(0, 1)
PROBABILITY_MASS = Bound(0, 1, low_open=True)

BOUNDS: dict[str, Bound] = {
    # queries, constitutions, principles
    "max_train_queries": COUNT,
    "max_eval_queries": COUNT,
    "num_constitutions": at_least(2, "SAMI contrasts at least 2 constitutions per query"),
    "principles_per_constitution": COUNT,
    "num_principles": COUNT,
    # generation
    "max_new_tokens": COUNT,
    "temperature": at_least(0, "0 is greedy"),
    "top_p": PROBABILITY_MASS,
    "generation_batch_size": COUNT,
    "vllm_tensor_parallel_size": COUNT,
    "vllm_gpu_memory_utilization": PROBABILITY_MASS,
    "vllm_max_model_len": COUNT,
    # the principle writer
    "writer_temperature": at_least(0),
    "writer_max_rounds": COUNT,
    "writer_max_tokens": COUNT,
    "writer_timeout": above(0, "seconds"),
    "writer_retries": at_least(0),
    # the SAMI loop
    "iterations": COUNT,
    "initial_steps": COUNT,
    "steps_growth": at_least(0),
    # the judge and the evaluation
    "judge_timeout": above(0, "seconds"),
    "judge_retries": at_least(0),
    "judge_concurrency": COUNT,
    "judge_max_tokens": COUNT,
    "margin": Bound(0, 1, high_open=True, why="a tie band on 2 p(A) - 1"),
    "workers": COUNT,
    "max_unparsed_fraction": FRACTION,
    "only_iterations": COUNT,
    "examples": at_least(0),
    # training (SAMIConfig and the TrainingArguments fields it inherits)
    "seed": SEED,
    "data_seed": SEED,
    "learning_rate": at_least(0),
    "per_device_train_batch_size": COUNT,
    "per_device_eval_batch_size": COUNT,
    "gradient_accumulation_steps": at_least(1, "micro-batches per optimiser step"),
    "eval_accumulation_steps": COUNT,
    "weight_decay": at_least(0),
    "max_grad_norm": at_least(0, "0 turns clipping off"),
    "adam_beta1": Bound(0, 1, high_open=True),
    "adam_beta2": Bound(0, 1, high_open=True),
    "adam_epsilon": at_least(0),
    "warmup_steps": at_least(0),
    "logging_steps": above(0),
    "save_steps": above(0),
    "eval_steps": above(0),
    "save_total_limit": COUNT,
    "dataloader_num_workers": at_least(0),
    "label_smoothing_factor": FRACTION,
}


def violation(name: str, value) -> str | None:
    """What is wrong with ``value`` for the flag ``name`` (``"must be >= 1"``), or ``None`` when it is allowed."""
    bound = BOUNDS.get(name)
    if bound is None or value is None:
        return None
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, (int, float)) and not isinstance(item, bool) and not bound.allows(item):
            return f"must be {bound.describe()}" + (f" ({bound.why})" if bound.why else "")
    return None


OUTPUT_FILES = ("output",)
"""Flags naming the one file a command writes: an existing folder is refused."""
FOLDERS = ("output_dir", "run_dir", "judge_cache", "writer_cache")
"""Flags naming a folder (to write into, or to read): an existing file is refused."""
RECORD_SOURCES = ("generations", "eval_generations", "candidate_responses", "baseline_responses")
"""Flags naming records to read (:mod:`sami.record_sources`: a file, a ``datasets`` folder or a hub id): a folder
holding no dataset is refused (a missing file is the reader's error)."""
DATA_FOLDER_SUFFIXES = (*DATA_FILE_TYPES, ".jsonl", ".json")
"""The data files that make a folder a dataset for ``datasets.load_dataset``."""


def holds_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``save_to_disk`` or holds data files (parquet, JSONL, CSV, arrow)."""
    if any((folder / marker).exists() for marker in SAVED_MARKERS):
        return True
    return any(path.suffix in DATA_FOLDER_SUFFIXES and path.is_file() for path in folder.rglob("*"))


def path_problem(name: str, value) -> str | None:
    """What is wrong with the path ``value`` of the flag ``name``, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    if name in OUTPUT_FILES and (path.is_dir() or value.endswith(("/", "\\"))):
        return "is a folder; give the path of a file to write (the folder flag is --output_dir)"
    if name in FOLDERS and path.exists() and not path.is_dir():
        return "is a file; give a folder"
    if name in RECORD_SOURCES and path.is_dir() and not holds_dataset(path):
        return ("is a folder; give the file to read, or a datasets folder (written by save_to_disk, or holding "
                "parquet/JSONL files)")
    return None
