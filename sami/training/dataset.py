"""Generation records -> a training dataset: one item per query, validated up front.

A record is one line of the generator's JSONL (``sami/generation/generate.py``): the query, its
template, its C constitutions and the C responses (response j was generated under constitution j).
Items stay raw records; the collator renders and tokenises them, so the principle order can be
reshuffled every epoch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from sami.generation.prompts import ANSWER_MARKER
from sami.jsonl import read_jsonl
from sami.records import GenerationRecord, RecordError

logger = logging.getLogger(__name__)


def response_text(record: dict, j: int) -> str:
    """The text trained on for response j.

    Without chain of thought this is ``responses[j]``. With it, the model wrote its reasoning, the
    answer marker and the answer, and the generator stored them apart; training scores the whole
    continuation, rejoined as ``reasoning + "\\n" + ANSWER_MARKER + " " + answer``.
    """
    answer = record["responses"][j]
    reasoning = (record.get("reasoning") or [None] * len(record["responses"]))[j]
    if record["template"].get("chain_of_thought") and reasoning:
        return f"{reasoning}\n{ANSWER_MARKER} {answer}"
    return answer


class SAMIDataset(Dataset):
    """The kept records of a generation run, one item per query.

    Records the generator marked as dropped (``record["dropped"]`` set by a filter) are skipped
    and counted in :attr:`num_dropped` (by reason in :attr:`dropped_reasons`); every kept
    record is validated here (:meth:`sami.records.GenerationRecord.check_trainable`), so a bad file
    fails before training starts. Items stay the records' plain dicts.

    Args:
        records: a list of record dicts, or the path of a generations JSONL file.

    Example:
        >>> dataset = SAMIDataset("runs/demo/iter_1/generations.jsonl")  # doctest: +SKIP
        >>> dataset[0]["responses"]  # doctest: +SKIP
    """

    def __init__(self, records: Iterable[dict] | str | Path):
        if isinstance(records, (str, Path)):
            source = read_jsonl(records, what="generations file")
        else:
            source = list(records)
        self.dropped_reasons: Counter[str] = Counter()
        self.records: list[dict] = []
        for index, record in enumerate(source):
            reason = record.get("dropped")
            if reason is not None:
                self.dropped_reasons[str(reason)] += 1
                continue
            where = f"record {index}"
            GenerationRecord.from_dict(record, where).check_trainable(where)
            self.records.append(record)
        if self.num_dropped:
            logger.info("sami: skipping %d record(s) the generation filters dropped: %s", self.num_dropped,
                        dict(self.dropped_reasons))
        if not self.records:
            raise RecordError("no trainable records: every record is empty or was dropped by the generation filters")

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped_reasons.values())

    @property
    def num_constitutions(self) -> list[int]:
        """The distinct C values, sorted (a micro-batch needs a single C)."""
        return sorted({len(r["constitutions"]) for r in self.records})

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.records[index]


def as_dataset(data: SAMIDataset | Sequence[dict] | str | Path | None) -> Dataset | None:
    """Wrap records or a JSONL path in a :class:`SAMIDataset`; pass datasets through."""
    if data is None or isinstance(data, Dataset) or hasattr(data, "column_names"):  # torch or HF datasets
        return data
    if isinstance(data, dict):  # a dict of eval datasets
        return {name: as_dataset(value) for name, value in data.items()}
    return SAMIDataset(data)
