"""The principle writer: a language model turns a task description into N principles, each with
an antithesis (the paper's method).

The writer is asked for one principle per sample in a fixed three-line format. Samples are
drawn in batches, parsed, validated and de-duplicated until N principles are collected; a
malformed or duplicate answer is simply re-sampled, and after ``max_rounds`` batches a
:class:`PrincipleWriterError` says how many were found and what to change.

Two backends: a local model (:func:`model_completer`), which writes field by field into a pre-filled
answer, and a chat model behind an OpenAI-compatible endpoint (:func:`api_reply`, through the judge's
:class:`~sami.api_client.APIClient`), which writes the whole answer (docs/principles.md).
"""

from __future__ import annotations

import itertools
import logging
import re
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sami.api_client import APIClient
from sami.errors import ConfigError, SamiError
from sami.principles.io import Principle, PrincipleSet, load_principles

if TYPE_CHECKING:
    from sami.config.args import PrincipleArgs

logger = logging.getLogger(__name__)

Complete = Callable[[Sequence[str], Sequence[str]], list[str]]
"""(prompts, prefills) -> the one-line continuation of each prefilled answer: a local model, field by field."""
Reply = Callable[[Sequence[str]], list[str]]
"""prompts -> each whole three-line answer: a chat API, which cannot continue a pre-filled answer."""

API_WRITER = "api"
"""The ``--writer`` value that selects the API writer (``--writer_model`` names the endpoint's model)."""
SAMPLES_PER_ROUND = 8

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

FIELD = re.compile(
    r"^\s*\**\s*(name|principle|definition|antithesis)\s*\**\s*:\s*\**\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)  # also "**Principle:** ...", as chat models write it
MAX_SENTENCE_CHARS = 300
MIN_WORDS = 3  # "The response" alone is an unfinished answer


class PrincipleWriterError(SamiError, RuntimeError):
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
    complete: Complete | None = None,
    *,
    reply: Reply | None = None,
    samples_per_round: int = SAMPLES_PER_ROUND,
    max_rounds: int = 10,
    aspects: Sequence[str] = ASPECTS,
) -> tuple[PrincipleSet, WriterReport]:
    """Ask the writer for principles until ``num_principles`` valid, distinct ones are found.

    Each sample is steered to one aspect of the response (length, tone, ...), which becomes the
    principle's name. With ``complete`` (a local model) the answer is written field by field: the
    reply is pre-filled with ``Principle: The response``, then ``Antithesis: The response``, each
    completion cut at the end of its line; even a 135M-parameter writer keeps to the format this way.
    With ``reply`` (a chat API) the writer answers the same instruction in one go, and its
    ``Principle`` and ``Antithesis`` lines are taken (the name is the aspect, as with ``complete``).

    Args:
        task: the user's description of the task ("summarise Reddit posts").
        num_principles: how many principles to return.
        complete: (prompts, prefills) -> one-line continuations; sampling should be on so retries differ.
        reply: prompts -> whole answers, instead of ``complete``; likewise sampled.
        samples_per_round: candidate principles drawn per round.
        max_rounds: rounds before giving up with :class:`PrincipleWriterError`.
        aspects: the aspects samples are steered to, in turn.
    """
    if (complete is None) == (reply is None):
        raise TypeError("write_principles needs exactly one writer: complete (a local model) or reply (a chat API)")
    if num_principles < 1:
        raise ConfigError(f"num_principles={num_principles}: ask the writer for at least 1 principle")
    if not task.strip():
        raise ConfigError("the task description is empty; describe the task the principles are for")
    found: list[Principle] = []
    report = WriterReport()
    aspects_pool, offset = tuple(aspects), 0
    for _ in range(max_rounds):
        taken = {p.name for p in found}
        aspects = [a for a in aspects_pool if a not in taken] or list(aspects_pool)
        round_aspects = [aspects[(offset + i) % len(aspects)] for i in range(samples_per_round)]
        offset += samples_per_round
        prompts = [WRITER_INSTRUCTION.format(task=task.strip(), aspect=a) for a in round_aspects]
        names = [f"Name: {a}\n" for a in round_aspects]
        if complete is not None:
            answers = names
            for label in ("Principle: The response", "Antithesis: The response"):
                prefills = [f"{a}{label}" for a in answers]
                lines = complete(prompts, prefills)
                answers = [f"{prefill} {line.strip()}\n" for prefill, line in zip(prefills, lines)]
        else:
            answers = [name + text for name, text in zip(names, reply(prompts))]  # the first Name line wins
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


def api_reply(
    client: APIClient, model: str, *, temperature: float = 0.8, max_tokens: int = 256, seed: int | None = 0
) -> Reply:
    """A :data:`Reply` backed by ``model`` behind an OpenAI-compatible endpoint.

    Each prompt is one chat request (a round's requests are sent concurrently). Sample ``i`` of the
    ``c``-th call carries the seed ``seed + 1000 c + i``, so re-samples differ even where the endpoint
    is deterministic for a seed (and hit different cache entries); ``seed=None`` sends no seed.

    Raises:
        PrincipleWriterError: a request failed (retries used up, a malformed body, another 4xx), naming the fix.
        APIAuthError, APIError, APIUnreachableError: from the client (rejected key, wrong URL or model, no connection).
    """
    calls = itertools.count()

    def reply(prompts: Sequence[str]) -> list[str]:
        call = next(calls)

        def ask(index: int, prompt: str) -> str:
            result = client.complete(
                [{"role": "user", "content": prompt}], model=model, max_tokens=max_tokens, temperature=temperature,
                seed=None if seed is None else seed + 1000 * call + index,
            )
            if result.failed:
                raise _request_failed(client, model, result.error)
            return result.content

        with ThreadPoolExecutor(max_workers=max(1, min(len(prompts), client.max_concurrency))) as pool:
            return list(pool.map(ask, range(len(prompts)), prompts))

    return reply


def _request_failed(client: APIClient, model: str, error: str) -> PrincipleWriterError:
    """The writer's error for a request that came back without an answer, with the likely fix."""
    if error.startswith("malformed response body"):
        fix = "the endpoint does not answer like an OpenAI chat completion; check --writer_base_url (usually ending in /v1)"
    elif re.search(r" after \d+ attempts$", error):  # 429, 5xx or timeouts, retried to the end
        fix = "the endpoint is overloaded or failing; try again later, or raise --writer_retries / --writer_timeout"
    else:  # another 4xx: a request the endpoint will not take
        fix = (
            f"check --writer_model ({model!r}) and --writer_max_tokens; an endpoint that rejects the 'seed' field "
            "(Mistral's API does) needs --writer_send_seed false"
        )
    endpoint = _without_credentials(client.url)
    return PrincipleWriterError(f"the writer endpoint {endpoint} failed a request ({error}); {fix}")


def obtain_principles(args: PrincipleArgs, seed: int = 0) -> PrincipleSet:
    """Load ``args.principles``, or have the writer write them from ``args.task_description``.

    The writer is the local model ``args.writer`` (loaded in bfloat16 with the options of
    ``args.writer_model_kwargs``), or with ``--writer api`` the model ``args.writer_model`` behind
    ``args.writer_base_url``. The set's metadata records which (backend, model and, for the
    API, the endpoint; never the key).
    """
    if args.principles:
        return load_principles(args.principles)
    if not args.task_description:
        raise ConfigError(
            "no principles given: pass --principles FILE (or a built-in name: hh, tldr, tldr_diverse, verifiable), "
            "or --task_description '...' to have the writer model write them"
        )
    options = {"max_rounds": args.writer_max_rounds, "aspects": args.writer_aspects}
    if args.writer == API_WRITER:
        if args.writer_cache and not args.writer_send_seed:
            raise ConfigError(
                "--writer_cache with --writer_send_seed false: without a seed every re-sample is the same request, "
                "answered from the cache; drop --writer_cache, or send the seed"
            )
        writer = {"backend": "api", "model": args.writer_model, "base_url": _without_credentials(args.writer_base_url)}
        with APIClient(
            args.writer_base_url, role="writer", api_key_env=args.writer_api_key_env,
            api_version=args.writer_api_version, timeout=args.writer_timeout, max_retries=args.writer_retries,
            max_concurrency=SAMPLES_PER_ROUND, cache_dir=args.writer_cache,
        ) as client:
            reply = api_reply(
                client, args.writer_model, temperature=args.writer_temperature, max_tokens=args.writer_max_tokens,
                seed=seed if args.writer_send_seed else None,
            )
            principle_set, report = write_principles(args.task_description, args.num_principles, reply=reply, **options)
            logger.info("writer endpoint %s: %s", client.url, client.stats())
    else:
        from sami.models import load_model

        loading, dtype = args.writer_loading()  # --writer_model_kwargs
        writer = {"backend": "local", "model": args.writer, **loading.identity(args.writer)}
        model, tokenizer = load_model(args.writer, dtype=dtype or "bfloat16", options=loading)
        complete = model_completer(model, tokenizer, temperature=args.writer_temperature, seed=seed)
        principle_set, report = write_principles(args.task_description, args.num_principles, complete, **options)
    logger.info(
        "writer %s: %d principles from %d samples (%d malformed, %d duplicates)",
        writer["model"], len(principle_set), report.samples, report.malformed, report.duplicates,
    )
    return PrincipleSet(principle_set.principles, task=principle_set.task, metadata={"writer": writer})


def _without_credentials(url: str) -> str:
    """``url`` without any user:password part or query (the endpoint, safe to write into a file)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
