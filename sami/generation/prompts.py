"""Prompt templates shared by generation, training and evaluation.

One template renders (constitution, query) into the text a model continues. Base models get
plain-text prompts in the paper's style; chat models get their own chat template with the
constitution in the system turn. Training tokenises the prompt and the response as separate
segments and concatenates the ids (:func:`encode_segments`), so a BPE merge across the
boundary can never shift the response mask (a pitfall of the authors' released code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sami.errors import ConfigError

Task = Literal["dialogue", "summarisation"]
ModelKind = Literal["base", "chat"]

INSTRUCTIONS: dict[str, str] = {
    "dialogue": "Write a response for the assistant that follows the principles in the constitution.",
    "summarisation": "Summarise the post below according to the principles in the constitution.",
}
BASE_TEMPLATES: dict[str, str] = {
    "dialogue": "System: {instruction}\n\nAssistant Constitution:\n{constitution}\n\nHuman: {query}\n\nAssistant:",
    "summarisation": "System: {instruction}\n\nSummarisation Constitution:\n{constitution}\n\nPOST: {query}\n\nSummary:",
}
CHAT_SYSTEM = "{instruction}\n\nConstitution:\n{constitution}"
CHAIN_OF_THOUGHT = (
    " First think step by step about how the principles apply, then write the final response after the line "
    "'{marker}'."
)
ANSWER_MARKER = "Final response:"


@dataclass(frozen=True)
class PromptTemplate:
    """How a (constitution, query) pair becomes model input.

    Args:
        task: ``"dialogue"`` or ``"summarisation"``.
        kind: ``"base"`` (plain text, as in the paper) or ``"chat"`` (the tokenizer's chat template).
        chain_of_thought: ask the model to reason first and answer after :data:`ANSWER_MARKER`.
    """

    task: Task
    kind: ModelKind
    chain_of_thought: bool = False

    def __post_init__(self) -> None:
        if self.task not in INSTRUCTIONS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of {sorted(INSTRUCTIONS)}")
        if self.kind not in ("base", "chat"):
            raise ConfigError(f"unknown prompt kind {self.kind!r}; choose 'base' or 'chat'")

    @property
    def response_separator(self) -> str:
        """Text between the prompt and the response: base prompts end in ``Assistant:``/``Summary:``."""
        return " " if self.kind == "base" else ""

    @property
    def add_special_tokens(self) -> bool:
        """Chat templates write their own BOS; base prompts get the tokenizer's."""
        return self.kind == "base"

    def instruction(self) -> str:
        text = INSTRUCTIONS[self.task]
        if self.chain_of_thought:
            text += CHAIN_OF_THOUGHT.format(marker=ANSWER_MARKER)
        return text

    def render(self, tokenizer, constitution: str, query: str) -> str:
        """The prompt text for one constitution (already rendered as text) and one query."""
        if self.kind == "base":
            return BASE_TEMPLATES[self.task].format(instruction=self.instruction(), constitution=constitution, query=query)
        system = CHAT_SYSTEM.format(instruction=self.instruction(), constitution=constitution)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": query}]
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates without a system role (e.g. Gemma): fold it into the user turn
            messages = [{"role": "user", "content": f"{system}\n\n{query}"}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def resolve_template(tokenizer, task: Task, kind: str = "auto", chain_of_thought: bool = False) -> PromptTemplate:
    """``kind="auto"`` uses the chat template when the tokenizer has one, the plain-text one otherwise."""
    has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if kind == "auto":
        kind = "chat" if has_chat_template else "base"
    if kind == "chat" and not has_chat_template:
        raise ConfigError("prompt kind 'chat' but the tokenizer has no chat template (a base model?); use 'base' or 'auto'")
    return PromptTemplate(task=task, kind=kind, chain_of_thought=chain_of_thought)  # type: ignore[arg-type]


def encode_segments(tokenizer, template: PromptTemplate, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the response, tokenised separately.

    The response ids are those of ``separator + response`` with no special tokens, so
    ``prompt_ids + response_ids`` is the training input and ``len(prompt_ids)`` is exactly
    where the response starts.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=template.add_special_tokens)["input_ids"]
    response_ids = tokenizer(template.response_separator + response, add_special_tokens=False)["input_ids"]
    return list(prompt_ids), list(response_ids)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split a chain-of-thought output into (reasoning, answer); no marker -> (None, text)."""
    head, marker, tail = text.partition(ANSWER_MARKER)
    if not marker:
        return None, text.strip()
    return head.strip(), tail.strip()
