"""A judge that runs a Hugging Face causal LM offline.

Instead of generating and parsing text, the judge reads the model's next-token distribution
after the judge prompt and :data:`~sami.evaluation.templates.LOCAL_ANSWER_PREFIX` and compares
the probability of ``A`` with that of ``B`` (each summed over its spellings, ``"A"`` and
``" A"``). Scoring both orders (a as A, then a as B) and averaging cancels the model's position
bias, which for small models is often larger than any preference about content::

    p_first  = P(A) / (P(A) + P(B))  with a shown as A
    p_second = P(B) / (P(A) + P(B))  with a shown as B
    p(a better) = (p_first + p_second) / 2;   tie when |2 p - 1| < margin

When the two letters together get less than ``min_letter_prob`` of the probability mass, the
model is not answering the question at all and the verdict is ``"unparsed"`` (counted).
"""

from __future__ import annotations

import json
import math
import threading
from typing import TYPE_CHECKING

import torch

from sami.evaluation.judges import JudgeError, JudgeResult
from sami.evaluation.templates import LOCAL_ANSWER_PREFIX, judge_template, render_judge_prompt

if TYPE_CHECKING:
    from sami.models.options import ModelOptions


class LocalJudge:
    """Judge with a local causal LM by the probability of answering ``A`` vs ``B``.

    Args:
        model: a causal LM (``transformers`` ``PreTrainedModel``), in eval mode.
        tokenizer: its tokenizer.
        template: ``"dialogue"``, ``"summarisation"`` or a custom template with the four fields.
        margin: half-width of the tie band on ``2 p(a better) - 1``.
        both_orders: score both positions and average (default); ``False`` scores one order only.
        min_letter_prob: below this total probability of ``A`` and ``B`` an order counts as unanswered.
        chat_template: ``"auto"`` uses the tokenizer's chat template when it has one.
        name: name recorded in verdicts.

    Example:
        >>> judge = LocalJudge.from_spec("smollm2-135m")  # doctest: +SKIP
        >>> judge.judge("Say hi.", "1. Be brief.", "Hi.", "Hello there, it is lovely to ...").verdict  # doctest: +SKIP
        'A'
    """

    max_concurrency = 1  # one forward at a time; torch already uses every core

    def __init__(
        self,
        model,
        tokenizer,
        *,
        template: str = "dialogue",
        margin: float = 0.1,
        both_orders: bool = True,
        min_letter_prob: float = 0.0,
        chat_template: str | bool = "auto",
        name: str = "local",
    ) -> None:
        if not 0 <= margin < 1:
            raise JudgeError(f"margin={margin} must be in [0, 1)")
        self.model = model
        self.tokenizer = tokenizer
        self.template = judge_template(template, local=True)
        self.margin = margin
        self.both_orders = both_orders
        self.min_letter_prob = min_letter_prob
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        self.use_chat = has_chat if chat_template == "auto" else bool(chat_template)
        self.name = name
        self.letter_ids = {letter: _letter_ids(tokenizer, letter) for letter in "AB"}
        if self.letter_ids["A"] & self.letter_ids["B"]:
            raise JudgeError("the tokenizer maps 'A' and 'B' to shared tokens; a local judge cannot tell them apart")
        self._lock = threading.Lock()
        self._counts = {"calls": 0, "forward_passes": 0, "failures": 0, "parse_failures": 0}

    @classmethod
    def from_spec(
        cls, spec: str, *, dtype: str = "auto", device: str = "auto", options: ModelOptions | None = None, **kwargs
    ) -> LocalJudge:
        """Load any model spec :func:`sami.models.loading.load_model` accepts (``"smollm2-135m"``, a folder ...),
        with its loading ``options`` (revision, trust_remote_code, attn_implementation, device_map, 4/8-bit)."""
        from sami.models.loading import load_model

        model, tokenizer = load_model(spec, dtype=dtype, device=device, options=options)
        kwargs.setdefault("name", f"local:{spec}")
        return cls(model, tokenizer, **kwargs)

    def __repr__(self) -> str:
        return f"LocalJudge(name={self.name!r}, margin={self.margin}, both_orders={self.both_orders})"

    def prompt(self, query: str, constitution: str, response_a: str, response_b: str) -> str:
        """The exact text the model continues."""
        text = render_judge_prompt(self.template, query, constitution, response_a, response_b)
        if self.use_chat:
            messages = [{"role": "user", "content": text}]
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return rendered + LOCAL_ANSWER_PREFIX
        return text + "\n" + LOCAL_ANSWER_PREFIX

    @torch.no_grad()
    def letter_probs(self, prompt: str) -> tuple[float, float]:
        """``(P(A) / (P(A) + P(B)), P(A) + P(B))`` for the next token after ``prompt``."""
        encoded = self.tokenizer(prompt, add_special_tokens=not self.use_chat, return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.model.device)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] > limit:
            raise _TooLong(f"judge prompt of {input_ids.shape[1]} tokens exceeds the judge's context of {limit}")
        try:  # logits at the last position only: the full (T, V) logits would cost more than the model
            logits = self.model(input_ids=input_ids, logits_to_keep=1).logits[0, -1].float()  # (V,)
        except TypeError:  # a model class without logits_to_keep
            logits = self.model(input_ids=input_ids).logits[0, -1].float()  # (V,)
        logp = torch.log_softmax(logits, dim=-1)
        log_a = torch.logsumexp(logp[sorted(self.letter_ids["A"])], dim=0)
        log_b = torch.logsumexp(logp[sorted(self.letter_ids["B"])], dim=0)
        with self._lock:
            self._counts["forward_passes"] += 1
        return torch.sigmoid(log_a - log_b).item(), (log_a.exp() + log_b.exp()).item()

    def judge(self, query: str, constitution: str, response_a: str, response_b: str) -> JudgeResult:
        with self._lock:
            self._counts["calls"] += 1
        try:
            p_first, mass_first = self.letter_probs(self.prompt(query, constitution, response_a, response_b))
            orders = {"p_a_shown_first": p_first, "letter_mass_first": mass_first}
            masses = [mass_first]
            p_a = p_first
            if self.both_orders:
                p_swapped, mass_second = self.letter_probs(self.prompt(query, constitution, response_b, response_a))
                orders.update(p_a_shown_second=1.0 - p_swapped, letter_mass_second=mass_second)
                masses.append(mass_second)
                p_a = (p_first + 1.0 - p_swapped) / 2
        except _TooLong as error:
            with self._lock:
                self._counts["failures"] += 1
            return JudgeResult("unparsed", "", str(error))
        raw = json.dumps({"p_a": p_a, **orders})
        if min(masses) < self.min_letter_prob:
            with self._lock:
                self._counts["parse_failures"] += 1
            return JudgeResult("unparsed", raw, None)
        preference = 2 * p_a - 1
        verdict = "tie" if abs(preference) < self.margin or math.isnan(preference) else ("A" if preference > 0 else "B")
        return JudgeResult(verdict, raw, None)

    def stats(self) -> dict:
        with self._lock:
            return {"judge": self.name, **self._counts}


class _TooLong(Exception):
    pass


def _letter_ids(tokenizer, letter: str) -> set[int]:
    """Single-token spellings of a letter (``"A"``, ``" A"``)."""
    ids = set()
    for variant in (letter, " " + letter):
        tokens = tokenizer.encode(variant, add_special_tokens=False)
        if len(tokens) == 1:
            ids.add(tokens[0])
    if not ids:
        raise JudgeError(f"the tokenizer has no single token for {letter!r}; a local judge needs one")
    return ids
