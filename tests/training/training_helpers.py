"""Helpers for the training tests: generation records and tiny random-weight models (fixtures: conftest.py)."""

from __future__ import annotations

import random

import torch

PRINCIPLES = {
    "concise": ("The summary is concise.", "The summary is long and rambling."),
    "comprehensive": ("The summary covers every main point.", "The summary omits the main points."),
    "polite": ("The response is polite.", "The response is rude."),
}
QUERIES = [
    "My landlord kept my deposit after I moved out, even though the flat was spotless. What can I do?",
    "I adopted a cat last week and she hides under the bed all day. Is that normal?",
    "Our team missed the deadline because two people were ill. How do I tell the client?",
    "I want to start running but my knees hurt after a few minutes. Any advice?",
    "My neighbour plays loud music every night until 2am and ignores my notes.",
    "I got two job offers: one pays more, the other is closer to home. Which should I take?",
    "The bakery on my street closed and I miss their bread. How can I bake something similar?",
    "My sister borrowed my car and returned it with a dent, but says it was already there.",
]
RESPONSES = [  # short: the tiny models' cost is the LM head over a 49k vocabulary, per response token
    "Ask for the deposit back in writing.",
    "Yes, give her time and a quiet room.",
    "Explain the illness and propose a new date.",
    "Start slowly and see a physiotherapist.",
    "Talk to them, then call the council.",
    "Weigh the commute against the pay.",
    "Try a simple sourdough at home.",
    "Find old photos and share the cost.",
]


def make_record(index: int, C: int = 2, kind: str = "base", task: str = "dialogue", principles=None) -> dict:
    """One generations record as ``sami generate`` writes it (C constitutions, C responses)."""
    names = list(principles or ["concise", "comprehensive"])
    rng = random.Random(index)
    constitutions, patterns = [], [[True] * len(names)]
    while len(patterns) < C:  # distinct negation patterns after the all-affirmed one
        pattern = [rng.random() < 0.5 for _ in names]
        if pattern not in patterns:
            patterns.append(pattern)
    for pattern in patterns:
        stances = [
            {"name": n, "affirmed": a, "text": PRINCIPLES[n][0 if a else 1]} for n, a in zip(names, pattern)
        ]
        constitutions.append({"stances": stances})
    responses = [RESPONSES[(index + j) % len(RESPONSES)] + ("" if j == 0 else " Also" * j) for j in range(C)]
    return {
        "query_id": f"q{index}",
        "query": QUERIES[index % len(QUERIES)],
        "task": task,
        "template": {"task": task, "kind": kind, "chain_of_thought": False},
        "constitutions": constitutions,
        "prompts": [""] * C,  # not read by training
        "responses": responses,
        "reasoning": [None] * C,
        "response_tokens": [len(r.split()) for r in responses],
        "finish_reasons": ["eos"] * C,
        "provenance": {"test": True},
        "dropped": None,
    }


def make_records(n: int, C: int = 2, kind: str = "base", **kwargs) -> list[dict]:
    return [make_record(i, C=C, kind=kind, **kwargs) for i in range(n)]


def tiny_model(vocab_size: int, seed: int = 0, attn: str = "sdpa"):
    """A 2-layer Llama with hidden size 32 and random weights (float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,  # as SmolLM2; half the parameters of an untied 49k-vocabulary head
    )
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def load_test_tokenizer():
    """SmolLM2's tokenizer (a real BPE with a chat template); None when the embedded model is not installed."""
    from sami.models import EmbeddedModelMissing, load_tokenizer

    try:
        return load_tokenizer("smollm2-135m")
    except EmbeddedModelMissing:
        return None
