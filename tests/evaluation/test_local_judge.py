"""The local judge: its A-vs-B arithmetic on a scripted model, a tiny random Llama, and the embedded smollm2."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import tiny_model

from sami.evaluation import Comparison, compare
from sami.evaluation.judges import JudgeError
from sami.evaluation.local_judge import LocalJudge


class ScriptedModel:
    """Next-token logits: A gets ``bias`` (a position bias) + 2 if response A contains GOOD; B gets 2 if B does."""

    def __init__(self, tokenizer, bias: float = 1.0, other: float = -30.0):
        self.tokenizer = tokenizer
        self.bias = bias
        self.other = other  # the logit of every other token
        self.device = torch.device("cpu")
        self.config = SimpleNamespace(max_position_embeddings=4096)
        self.ids = {letter: tokenizer.encode(" " + letter, add_special_tokens=False)[0] for letter in "AB"}

    def __call__(self, input_ids, logits_to_keep=0):
        text = self.tokenizer.decode(input_ids[0])
        response_a = text.split("Response A:")[1].split("Response B:")[0]
        response_b = text.split("Response B:")[1].split("Which response")[0]
        logits = torch.full((1, 1, len(self.tokenizer)), self.other)
        logits[0, -1, self.ids["A"]] = self.bias + 2.0 * ("GOOD" in response_a)
        logits[0, -1, self.ids["B"]] = 2.0 * ("GOOD" in response_b)
        return SimpleNamespace(logits=logits)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_both_orders_cancel_position_bias(smol_tokenizer):
    judge = LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, margin=0.1)
    result = judge.judge("q", "1. Be good.", "this is GOOD", "this is bad")
    raw = json.loads(result.raw)
    # shown first: logit A 1 + 2, B 0 -> sigmoid(3); shown second: A 1, B 2 -> P(B) = sigmoid(1)
    assert raw["p_a_shown_first"] == pytest.approx(sigmoid(3), abs=1e-5)
    assert raw["p_a_shown_second"] == pytest.approx(sigmoid(1), abs=1e-5)
    assert raw["p_a"] == pytest.approx((sigmoid(3) + sigmoid(1)) / 2, abs=1e-5)
    assert result.verdict == "A"
    assert judge.judge("q", "c", "bad", "GOOD").verdict == "B"
    same = judge.judge("q", "c", "bad one", "bad two")
    assert same.verdict == "tie" and json.loads(same.raw)["p_a"] == pytest.approx(0.5, abs=1e-6)
    one_order = LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, both_orders=False)
    assert one_order.judge("q", "c", "bad one", "bad two").verdict == "A"  # the bias shows with one order
    assert judge.stats()["forward_passes"] == 6 and one_order.stats()["forward_passes"] == 1


def test_tie_margin_and_letter_mass(smol_tokenizer):
    wide = LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, margin=0.9)
    assert wide.judge("q", "c", "GOOD", "bad").verdict == "tie"  # 2 * 0.84 - 1 = 0.68 < 0.9
    picky = LocalJudge(ScriptedModel(smol_tokenizer, other=5.0), smol_tokenizer, min_letter_prob=0.5)
    result = picky.judge("q", "c", "meh", "bad")  # A and B both far below the other tokens
    assert result.verdict == "unparsed" and result.error is None and picky.stats()["parse_failures"] == 1
    with pytest.raises(JudgeError, match="margin"):
        LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, margin=1.5)


def test_prompt_uses_the_chat_template_and_answer_prefix(smol_tokenizer):
    judge = LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, template="summarisation")
    prompt = judge.prompt("A long post.", "1. Be concise.", "s1", "s2")
    assert "<|im_start|>user" in prompt and prompt.endswith("<|im_start|>assistant\nAnswer:")
    assert "Post: A long post." in prompt and "Summary A: s1" in prompt and "1. Be concise." in prompt
    plain = LocalJudge(ScriptedModel(smol_tokenizer), smol_tokenizer, chat_template=False)
    assert plain.prompt("q", "c", "a", "b").endswith("one letter.\nAnswer:")


def test_tiny_random_llama_end_to_end(smol_tokenizer):
    model = tiny_model(vocab_size=len(smol_tokenizer), max_position_embeddings=512)
    judge = LocalJudge(model, smol_tokenizer, margin=0.0, name="tiny")
    items = [Comparison(f"q{i}", f"question {i}", "1. Be kind.", f"kind answer {i}", f"rude answer {i}", ["kind"],
                        [True]) for i in range(4)]
    verdicts = compare(judge, items, both_orders=False, workers=4, progress=False)
    for verdict in verdicts:
        p_a = json.loads(verdict.raw)["p_a"]
        assert 0 <= p_a <= 1 and verdict.judge_verdict in ("A", "B") and verdict.judge == "tiny"
    too_long = judge.judge("word " * 600, "c", "a", "b")  # beyond the 512 positions of this model
    assert too_long.verdict == "unparsed" and "exceeds" in too_long.error and judge.stats()["failures"] == 1


@pytest.mark.slow
def test_embedded_smollm2_judge(one_torch_thread):
    """The embedded 135M model as a judge: it runs offline, answers with A/B (most of the mass), and scores
    both orders. It is far too small to be a good judge; this checks the plumbing, not its taste."""
    judge = LocalJudge.from_spec("smollm2-135m", device="cpu")
    result = judge.judge(
        "What is the capital of France?",
        "1. The response is correct and helpful.",
        "The capital of France is Paris.",
        "The capital of France is Berlin.",
    )
    raw = json.loads(result.raw)
    assert result.verdict in ("A", "B", "tie") and result.error is None
    assert raw["letter_mass_first"] > 0.3 and raw["letter_mass_second"] > 0.3
    assert judge.stats()["forward_passes"] == 2
