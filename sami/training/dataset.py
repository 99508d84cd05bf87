"""Generation records -> a training dataset: one item per query, validated up front.

A record is one line of the generator's JSONL (``sami/generation/generate.py``): the query, its
template, its C constitutions and the C responses (response j was generated under constitution j).
Items stay raw records; the collator renders and tokenises them, so the principle order can be
reshuffled every epoch. Records may come from a JSONL file, a list of dicts, a ``datasets`` dataset, a
folder saved with ``save_to_disk``, a data folder or a hub dataset id (:mod:`sami.record_sources`): all
are validated and filtered alike.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from sami.generation.prompts import ANSWER_MARKER
from sami.record_sources import is_datasets_object, read_rows, rows_of
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
        records: record dicts (a list, or any map-style or iterable dataset of them), a ``datasets``
            ``Dataset``/``DatasetDict``, or a source :func:`sami.record_sources.read_rows` reads: a generations
            JSONL file, a ``save_to_disk`` folder, a data folder or a hub dataset id (``owner/name[:config]``).
        splits: from a dataset with several splits, the first of these it has (one split is taken as it is).

    Example:
        >>> dataset = SAMIDataset("runs/demo/iter_1/generations.jsonl")  # doctest: +SKIP
        >>> dataset = SAMIDataset("my-org/sami-run:iter_1", splits=("train",))  # doctest: +SKIP
        >>> dataset[0]["responses"]  # doctest: +SKIP
    """

    def __init__(self, records: Iterable[dict] | Dataset | str | Path, splits: Sequence[str] | None = None):
        if isinstance(records, (str, Path)):
            source = read_rows(records, splits=splits, what="generations file")
        elif is_datasets_object(records):
            source = rows_of(records, splits)
        elif isinstance(records, Dataset) and not hasattr(records, "__iter__"):  # map-style: indexed, not iterable
            source = [records[i] for i in range(len(records))]
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


def as_dataset(data, splits: Sequence[str] | None = None) -> SAMIDataset | dict[str, SAMIDataset] | None:
    """Any records the trainer accepts as a :class:`SAMIDataset` (validated, dropped records skipped).

    A :class:`SAMIDataset` is returned as it is, a plain dict of them (eval datasets by name) entry by entry;
    everything else (record lists, JSONL paths, hub ids, ``datasets`` and torch datasets) goes through
    :class:`SAMIDataset`, so a ``datasets.Dataset`` holding a record dropped as ``identical`` never trains.
    """
    if data is None or isinstance(data, SAMIDataset):
        return data
    if isinstance(data, dict) and not is_datasets_object(data):  # a dict of eval datasets
        return {name: as_dataset(value, splits) for name, value in data.items()}
    return SAMIDataset(data, splits)
