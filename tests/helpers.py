"""Builders shared by the tests: tiny random-weight causal LMs and generation records (fixtures: conftest.py).

Import as ``from helpers import ...``: pytest puts ``tests/`` on ``sys.path`` (the root conftest.py, no
``__init__.py``).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import torch

VOCAB = 97  # tiny_model's default vocabulary; pass vocab_size=len(tokenizer) to pair a model with a real tokenizer

# 2 layers, hidden size 32; small sliding windows (5-6 tokens) make the windowed layers matter at test lengths
_COMMON = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
_LOCAL_GLOBAL = ["sliding_attention", "full_attention"]
_FAMILIES = {  # config.model_type -> what sets the family apart
    "llama": {},
    "mistral": {"sliding_window": 5},  # one window for every layer
    "mixtral": {"sliding_window": 5, "num_local_experts": 4, "num_experts_per_tok": 2},
    "phi3": {"sliding_window": 5},
    "olmo2": {},
    "gemma": {"head_dim": 8},  # scaled embeddings
    "qwen2": {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1},  # layer 1 sliding
    "qwen3": {"head_dim": 8, "use_sliding_window": True, "sliding_window": 5, "max_window_layers": 1},
    "qwen3_moe": {
        "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "use_sliding_window": True, "sliding_window": 5,
    },
    "smollm3": {"use_sliding_window": True, "sliding_window": 5, "no_rope_layer_interval": 2},  # layer 1: no rope
    # local + global layers, attention and final logit soft-capping
    "gemma2": {"head_dim": 8, "sliding_window": 6, "final_logit_softcapping": 5.0, "layer_types": _LOCAL_GLOBAL},
    # scaled embeddings, QK-norm, final logit soft-capping, local + global layers
    "gemma3_text": {"head_dim": 8, "sliding_window": 6, "final_logit_softcapping": 5.0, "layer_types": _LOCAL_GLOBAL},
}
FAMILIES = tuple(_FAMILIES)  # the architectures sami supports (sami.models.capabilities.ARCHITECTURES)
# the attention implementations each family's transformers class offers (the first is tiny_model's default)
ATTENTIONS = {family: ("eager",) if family == "gemma2" else ("sdpa", "eager") for family in FAMILIES}


def tiny_config(family: str = "llama", *, vocab_size: int = VOCAB, **overrides):
    """The config of a 2-layer, 32-wide model of ``family`` (any ``config.model_type``); ``overrides`` win."""
    from transformers import AutoConfig

    settings = {**_COMMON, "vocab_size": vocab_size, **_FAMILIES.get(family, {}), **overrides}
    return AutoConfig.for_model(family, **settings)


def tiny_model(
    family: str = "llama",
    *,
    vocab_size: int = VOCAB,
    attn: str | None = None,
    seed: int = 0,
    scale: float = 1.0,
    **overrides,
):
    """A float32 tiny model of ``family`` with random weights drawn from ``seed``, in eval mode.

    ``attn`` is the attention implementation; default: sdpa (eager for Gemma 2, which has no sdpa).
    ``scale`` multiplies every matrix: the random init (std 0.02) gives near-uniform log-probs, and scaled
    weights (e.g. 10) give a log-prob matrix that differs visibly between pairs. ``overrides`` go to the config.
    """
    from transformers import AutoModelForCausalLM

    config = tiny_config(family, vocab_size=vocab_size, **overrides)
    torch.manual_seed(seed)
    attn = attn or ATTENTIONS.get(family, ("sdpa",))[0]
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).float()
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(scale)
    return model.eval()


# ------------------------------------------------------------------------------------------------ records

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
    """``n`` records ``make_record(0..n-1)``."""
    return [make_record(i, C=C, kind=kind, **kwargs) for i in range(n)]


class LocalHub:
    """Stands in for ``huggingface_hub.HfApi``: repos are folders under ``root``; every call is recorded."""

    root: Path
    calls: list

    def __init__(self, **kwargs):
        pass

    def create_repo(self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False):
        repo_id = repo_id if "/" in repo_id else f"me/{repo_id}"
        self.calls.append(("create_repo", repo_id, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append(("upload_folder", repo_id, str(folder_path)))
        folder = Path(folder_path)
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            (self.root / repo_id / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / name, self.root / repo_id / name)
        return SimpleNamespace(repo_url=f"https://huggingface.co/{repo_id}")


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """Serve ``server`` (a real HTTP server on loopback) from a thread while inside; shut it down after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
