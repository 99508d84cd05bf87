"""The principle writer: a language model turns a task description into N principles, each with
an antithesis (the paper's method).

The writer is asked for one principle per sample in a fixed three-line format. Samples are
drawn in batches, parsed, validated and de-duplicated until N principles are collected; a
malformed or duplicate answer is simply re-sampled, and after ``max_rounds`` batches a
:class:`PrincipleWriterError` says how many were found and what to change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sami.principles.io import Principle, PrincipleSet

logger = logging.getLogger(__name__)

Complete = Callable[[Sequence[str], Sequence[str]], list[str]]
"""(prompts, prefills) -> the one-line continuation of each prefilled answer; any backend."""

WRITER_INSTRUCTION = """You write principles that an AI assistant's responses should follow for a task.
A principle is one sentence about the response. Its antithesis is one sentence stating the exact opposite.
Answer in exactly three lines:
Name: <one or two lowercase words>
Principle: <one sentence>
Antithesis: <one sentence>

Task: {task}
Write a principle about the {aspect} of the response."""
ASPECTS = (
    "length", "tone", "clarity", "structure", "accuracy", "safety", "detail", "politeness",
    "examples", "honesty", "focus", "language", "formatting", "completeness", "creativity", "empathy",
)
"""Aspects the writer is steered to, one per sample, so even a small writer gives distinct principles."""

FIELD = re.compile(r"^\s*\**\s*(name|principle|definition|antithesis)\s*\**\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
MAX_SENTENCE_CHARS = 300
MIN_WORDS = 3  # "The response" alone is an unfinished answer


class PrincipleWriterError(RuntimeError):
    """The writer did not produce enough valid principles within the allowed attempts."""


def parse_principle(text: str) -> Principle | None:
    """Parse one ``Name / Principle / Antithesis`` answer; ``None`` when it is malformed."""
    fields: dict[str, str] = {}
    for key, value in FIELD.findall(text):
        key = "definition" if key.lower() in ("principle", "definition") else key.lower()
        fields.setdefault(key, value.strip().strip('"'))
    if set(fields) != {"name", "definition", "antithesis"}:
        return None
    name = re.sub(r"[^a-z0-9]+", "_", fields["name"].lower()).strip("_")
    definition, antithesis = fields["definition"], fields["antithesis"]
    if not name or len(name) > 40 or min(len(definition.split()), len(antithesis.split())) < MIN_WORDS:
        return None
    if max(len(definition), len(antithesis)) > MAX_SENTENCE_CHARS or definition.lower() == antithesis.lower():
        return None
    return Principle(name=name, definition=definition, antithesis=antithesis)


@dataclass
class WriterReport:
    samples: int = 0
    malformed: int = 0
    duplicates: int = 0


def write_principles(
    task: str,
    num_principles: int,
    complete: Complete,
    *,
    samples_per_round: int = 8,
    max_rounds: int = 10,
    aspects: Sequence[str] = ASPECTS,
) -> tuple[PrincipleSet, WriterReport]:
    """Ask ``complete`` for principles until ``num_principles`` valid, distinct ones are found.

    Each sample is steered to one aspect of the response (length, tone, ...), which becomes the
    principle's name, and the answer is written field by field: the reply is pre-filled with
    ``Principle: The response``, then ``Antithesis: The response``, each completion cut at the end
    of its line. Even a 135M-parameter writer keeps to the format this way.

    Args:
        task: the user's description of the task ("summarise Reddit posts").
        num_principles: how many principles to return.
        complete: (prompts, prefills) -> one-line continuations; sampling should be on so retries differ.
        samples_per_round: candidate principles drawn per round.
        max_rounds: rounds before giving up with :class:`PrincipleWriterError`.
        aspects: the aspects samples are steered to, in turn.
    """
    if num_principles < 1:
        raise ValueError("num_principles must be >= 1")
    if not task.strip():
        raise ValueError("the task description is empty; describe the task the principles are for")
    found: list[Principle] = []
    report = WriterReport()
    aspects_pool, offset = tuple(aspects), 0
    for _ in range(max_rounds):
        taken = {p.name for p in found}
        aspects = [a for a in aspects_pool if a not in taken] or list(aspects_pool)
        round_aspects = [aspects[(offset + i) % len(aspects)] for i in range(samples_per_round)]
        offset += samples_per_round
        prompts = [WRITER_INSTRUCTION.format(task=task.strip(), aspect=a) for a in round_aspects]
        answers = [f"Name: {a}\n" for a in round_aspects]
        for label in ("Principle: The response", "Antithesis: The response"):
            prefills = [f"{a}{label}" for a in answers]
            lines = complete(prompts, prefills)
            answers = [f"{prefill} {line.strip()}\n" for prefill, line in zip(prefills, lines)]
        for text in answers:
            report.samples += 1
            principle = parse_principle(text)
            if principle is None:
                report.malformed += 1
                continue
            if _is_duplicate(principle, found):
                report.duplicates += 1
                continue
            found.append(principle)
            if len(found) == num_principles:
                return PrincipleSet(tuple(found), task=task.strip()), report
    raise PrincipleWriterError(
        f"the writer produced {len(found)} of {num_principles} valid distinct principles in {report.samples} samples "
        f"({report.malformed} malformed, {report.duplicates} duplicates); raise max_rounds, use a stronger writer "
        "model, or write the principles by hand (see docs/principles.md)"
    )


def _is_duplicate(candidate: Principle, found: Sequence[Principle]) -> bool:
    return any(candidate.name == p.name or candidate.definition.lower() == p.definition.lower() for p in found)


def model_completer(model, tokenizer, *, temperature: float = 0.8, max_new_tokens: int = 60, seed: int = 0) -> Complete:
    """A :data:`Complete` backed by a local Hugging Face model (its chat template when it has one)."""
    from sami.generation import HFGenerator, SamplingConfig, generate_texts

    chat = bool(getattr(tokenizer, "chat_template", None))
    calls = iter(range(1_000_000))
    generator = HFGenerator.from_model(model, tokenizer)

    def complete(prompts: Sequence[str], prefills: Sequence[str]) -> list[str]:
        texts = [
            (
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                if chat
                else f"{p}\n\n"
            )
            + prefill
            for p, prefill in zip(prompts, prefills)
        ]
        sampling = SamplingConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=0.95,
            stop_strings=("\n",),
            batch_size=len(texts),
            seed=seed + 1000 * next(calls),
        )
        return [c.text for c in generate_texts(generator, texts, sampling, add_special_tokens=not chat)]

    return complete
