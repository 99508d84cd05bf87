"""The contrastive matrix: exact collation, equality with one forward per pair, shared == plain."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import ATTENTIONS, FAMILIES, VOCAB, tiny_config, tiny_model

from sami.models.capabilities import ARCHITECTURES, shared_attention_mask
from sami.objective import ContrastiveExample, collate_contrastive, contrastive_logprobs, resolve_layout, sami_loss
from sami.objective.logprobs import _block_mask

SCALE = 10.0  # random init (std 0.02) gives near-uniform log-probs; scaled weights make the matrix informative


def informative_model(family: str = "llama", attn: str | None = None, **overrides):
    """A tiny model of ``family`` whose log-prob matrix is informative."""
    return tiny_model(family, attn=attn, scale=SCALE, **overrides)


def test_every_supported_architecture_is_tested_here():
    """The architecture table is only as good as these tests: each row has a tiny model in tests/helpers.py."""
    assert set(FAMILIES) == set(ARCHITECTURES)


def random_examples(B: int = 2, C: int = 3, seed: int = 0) -> list[ContrastiveExample]:
    """B queries, C constitutions; prompt lengths 1-9 and response lengths 1-7 all differ."""
    g = torch.Generator().manual_seed(seed)

    def ids(lo, hi):
        n = int(torch.randint(lo, hi + 1, (1,), generator=g))
        return torch.randint(1, VOCAB, (n,), generator=g).tolist()

    return [ContrastiveExample([ids(1, 9) for _ in range(C)], [ids(1, 7) for _ in range(C)]) for _ in range(B)]


def one_forward_per_pair(model, examples: list[ContrastiveExample], aggregation: str = "mean") -> torch.Tensor:
    """The reference: for each (b, i, j), run [prompt_i + y_j] alone and log-softmax the model's own logits."""
    B, C = len(examples), len(examples[0].prompt_ids)
    out = torch.zeros(B, C, C)
    with torch.no_grad():
        for b, ex in enumerate(examples):
            for i, prompt in enumerate(ex.prompt_ids):
                for j, response in enumerate(ex.response_ids):
                    logits = model(torch.tensor([prompt + response])).logits[0].float()  # (T, V)
                    logp = logits.log_softmax(-1)[len(prompt) - 1 : -1]  # (|y_j|, V): predicting y_j
                    token_logp = logp.gather(1, torch.tensor(response)[:, None])  # (|y_j|, 1)
                    out[b, i, j] = token_logp.mean() if aggregation == "mean" else token_logp.sum()
    return out


def loss_and_grads(model, examples, layout: str):
    model.zero_grad()
    logp = contrastive_logprobs(model, collate_contrastive(examples, layout, pad_token_id=0))
    out = sami_loss(logp)
    out.loss.mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logp.detach(), out.loss.mean().detach(), grads


# ----------------------------------------------------------------------------------------------- collation


def test_collate_plain_exact():
    """prompts [1 2], [3]; responses [5 6], [7] -> rows [c_i x | y_j] for (i, j) = 00, 01, 10, 11."""
    batch = collate_contrastive([ContrastiveExample([[1, 2], [3]], [[5, 6], [7]])], "plain", pad_token_id=0)
    expected = {
        "input_ids": [[1, 2, 5, 6], [1, 2, 7, 0], [3, 5, 6, 0], [3, 7, 0, 0]],
        "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]],
        "token_rows": [0, 0, 1, 2, 2, 3],
        "token_positions": [1, 2, 1, 0, 1, 0],  # the position before each response token
        "token_labels": [5, 6, 7, 5, 6, 7],
        "token_cells": [0, 0, 1, 2, 2, 3],  # (b * C + i) * C + j
        "response_lengths": [[2, 1]],
    }
    assert set(batch) == set(expected)
    for key, value in expected.items():
        assert batch[key].tolist() == value, key


def test_collate_shared_exact():
    """One row per constitution: [c_i x | y_0 | y_1]; y_1's first token is predicted from the prefix's last token."""
    batch = collate_contrastive([ContrastiveExample([[1, 2], [3]], [[5, 6], [7]])], "shared", pad_token_id=0)
    expected = {
        "input_ids": [[1, 2, 5, 6, 7], [3, 5, 6, 7, 0]],
        "segment_ids": [[0, 0, 1, 1, 2], [0, 1, 1, 2, -1]],
        "position_ids": [[0, 1, 2, 3, 2], [0, 1, 2, 1, 0]],  # every response continues from the prefix
        "token_rows": [0, 0, 0, 1, 1, 1],
        "token_positions": [1, 2, 1, 0, 1, 0],
        "token_labels": [5, 6, 7, 5, 6, 7],
        "token_cells": [0, 0, 1, 2, 2, 3],
        "response_lengths": [[2, 1]],
    }
    assert set(batch) == set(expected)
    for key, value in expected.items():
        assert batch[key].tolist() == value, key


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_mask_exact(attn):
    """Row [1 2 | 5 6 | 7]: y_0 sees the prefix and itself, y_1 (position 4) sees the prefix and itself only."""
    batch = collate_contrastive([ContrastiveExample([[1, 2], [3]], [[5, 6], [7]])], "shared", pad_token_id=0)
    allowed = _block_mask(batch["segment_ids"])
    mask = shared_attention_mask(informative_model("llama", attn), allowed, batch["position_ids"])
    assert mask.shape == (2, 1, 5, 5)
    allowed = mask[0, 0] if attn == "sdpa" else mask[0, 0] == 0
    assert allowed.int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],
    ]
    if attn == "eager":
        assert mask.dtype == torch.float32 and mask.min() == torch.finfo(torch.float32).min
    # the padding position of row 1 sees itself (and the prefix), so no softmax runs over nothing
    assert bool((mask[1, 0, 4] if attn == "sdpa" else mask[1, 0, 4] == 0)[4])


@pytest.mark.parametrize(
    "examples, match",
    [
        ([], "at least one example"),
        ([ContrastiveExample([[1], [2]], [[3], []])], "response 1 is empty"),
        ([ContrastiveExample([[1], []], [[3], [4]])], "prompt 1 is empty"),
        ([ContrastiveExample([[1]], [[3]])], "C >= 2"),
        ([ContrastiveExample([[1], [2]], [[3], [4], [5]])], "one response per constitution"),
        (
            [ContrastiveExample([[1], [2]], [[3], [4]]), ContrastiveExample([[1], [2], [3]], [[3], [4], [5]])],
            "the same C",
        ),
    ],
)
@pytest.mark.parametrize("layout", ["plain", "shared"])
def test_collate_rejects_bad_examples(examples, match, layout):
    with pytest.raises(ValueError, match=match):
        collate_contrastive(examples, layout, pad_token_id=0)


def test_collate_rejects_unknown_layout():
    with pytest.raises(ValueError, match="layout must be"):
        collate_contrastive(random_examples(), "auto", pad_token_id=0)


# ----------------------------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layout", ["plain", "shared"])
def test_matches_one_forward_per_pair(family, layout):
    """C = 3, B = 2, all lengths different; Gemma's soft-capped logits included."""
    model, examples = informative_model(family), random_examples()
    batch = collate_contrastive(examples, layout, pad_token_id=0)
    for aggregation in ("mean", "sum"):
        logp = contrastive_logprobs(model, batch, aggregation)
        assert logp.shape == (2, 3, 3) and logp.dtype == torch.float32
        torch.testing.assert_close(logp.detach(), one_forward_per_pair(model, examples, aggregation), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family, attn", [(family, attn) for family in FAMILIES for attn in ATTENTIONS[family]])
def test_shared_equals_plain_with_loss_and_gradients(family, attn):
    model, examples = informative_model(family, attn), random_examples(B=2, C=3, seed=1)
    assert resolve_layout(model) == "shared"
    logp_plain, loss_plain, grads_plain = loss_and_grads(model, examples, "plain")
    logp_shared, loss_shared, grads_shared = loss_and_grads(model, examples, "shared")
    assert logp_plain.std() > 0.1  # the matrix is informative, not near-uniform
    torch.testing.assert_close(logp_shared, logp_plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(loss_shared, loss_plain, atol=1e-5, rtol=0)
    assert grads_plain.keys() == grads_shared.keys() == {n for n, _ in model.named_parameters()}
    for param, grad in grads_plain.items():
        torch.testing.assert_close(grads_shared[param], grad, atol=1e-4, rtol=1e-3, msg=param)


@pytest.mark.parametrize("family", [f for f in FAMILIES if getattr(tiny_config(f), "sliding_window", None)])
def test_sliding_windows_matter_at_these_lengths(family):
    """Guard for the tests above: the 5-6 token windows of the tiny models change the matrix, so matching it is a
    test (a window wider than every row is no window)."""
    examples = random_examples(B=2, C=3, seed=1)
    windowed, full = informative_model(family), informative_model(family, sliding_window=100)
    for (name, a), b in zip(windowed.state_dict().items(), full.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # same weights, only the window differs
    batch = collate_contrastive(examples, "shared", pad_token_id=0)
    assert (contrastive_logprobs(windowed, batch) - contrastive_logprobs(full, batch)).abs().max() > 1e-3


def test_mean_is_sum_over_response_length():
    model, examples = informative_model(), random_examples()
    batch = collate_contrastive(examples, "shared", pad_token_id=0)
    total = contrastive_logprobs(model, batch, "sum")
    mean = contrastive_logprobs(model, batch, "mean")
    torch.testing.assert_close(mean * batch["response_lengths"][:, None, :], total)
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        contrastive_logprobs(model, batch, "max")


def test_chunking_and_no_grad_do_not_change_the_matrix():
    model, examples = informative_model("gemma3_text"), random_examples()
    batch = collate_contrastive(examples, "shared", pad_token_id=0)
    reference = contrastive_logprobs(model, batch)
    one_token_chunks = contrastive_logprobs(model, batch, chunk_size=1)
    torch.testing.assert_close(one_token_chunks, reference)
    with torch.no_grad():
        torch.testing.assert_close(contrastive_logprobs(model, batch), reference.detach())
    # gradients through the recomputed chunks equal those of a single chunk
    g1 = torch.autograd.grad(one_token_chunks.sum(), model.lm_head.weight)[0]
    g2 = torch.autograd.grad(contrastive_logprobs(model, batch, chunk_size=10_000).sum(), model.lm_head.weight)[0]
    torch.testing.assert_close(g1, g2)


def test_peft_lora_model():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(informative_model(), LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    examples = random_examples()
    assert resolve_layout(model) == "shared"
    logp_plain, _, grads_plain = loss_and_grads(model, examples, "plain")
    logp_shared, _, grads_shared = loss_and_grads(model, examples, "shared")
    torch.testing.assert_close(logp_shared, logp_plain, atol=1e-4, rtol=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and grads_shared.keys() == trainable and all("lora_" in n for n in trainable)
    for param, grad in grads_plain.items():
        torch.testing.assert_close(grads_shared[param], grad, atol=1e-4, rtol=1e-3, msg=param)


def test_bfloat16_model_gives_float32_matrix():
    model, examples = informative_model("gemma3_text", "eager"), random_examples()
    reference = contrastive_logprobs(model, collate_contrastive(examples, "plain", 0)).detach()
    model.to(torch.bfloat16)
    logp = contrastive_logprobs(model, collate_contrastive(examples, "shared", 0))
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp.detach(), reference, atol=0.15, rtol=0.05)  # bf16 rounding only


def test_the_lm_head_follows_the_architecture_not_stray_config_fields():
    """Llama applies no soft-capping, whatever its config holds; neither does sami (the table says so)."""
    model, examples = informative_model("llama"), random_examples()
    model.config.final_logit_softcapping = 1.0
    logp = contrastive_logprobs(model, collate_contrastive(examples, "plain", 0))
    torch.testing.assert_close(logp.detach(), one_forward_per_pair(model, examples), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- layout choice


def test_resolve_layout(caplog):
    model = informative_model("llama", "sdpa")
    assert resolve_layout(model) == "shared"
    assert resolve_layout(model, "shared") == "shared"
    assert resolve_layout(model, "plain") == "plain"
    with pytest.raises(ValueError, match="layout must be"):
        resolve_layout(model, "packed")


def test_unsupported_attention_falls_back_to_plain(caplog):
    model = informative_model("llama", "flex_attention")
    with caplog.at_level(logging.WARNING, logger="sami.objective.logprobs"):
        assert resolve_layout(model, "auto") == "plain"
    assert "falling back to the plain layout" in caplog.text and "flex_attention" in caplog.text
    with pytest.raises(ValueError, match="--attn_implementation sdpa"):
        resolve_layout(model, "shared")
    with pytest.raises(ValueError, match="does not support"):
        contrastive_logprobs(model, collate_contrastive(random_examples(), "shared", 0))


# ----------------------------------------------------------------------------------------------- embedded model


def load_embedded(name: str):
    """An embedded model in float32 (dequantised once, then loaded from sami's cache)."""
    from sami.models import EmbeddedModelMissing, load_model

    try:
        return load_model(name, dtype="float32", device="cpu")[0]
    except EmbeddedModelMissing:
        pytest.skip(f"the embedded model {name} is not installed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_embedded_model_shared_equals_plain(name):
    model = load_embedded(name)
    examples = [
        ContrastiveExample([[2, *range(100, 130)], [2, *range(200, 222)]], [list(range(300, 312)), [400, 401, 402]]),
        ContrastiveExample([[2, *range(500, 509)], [2, *range(600, 625)]], [[700], list(range(800, 809))]),
    ]
    logp_plain, loss_plain, grads_plain = loss_and_grads(model, examples, "plain")
    logp_shared, loss_shared, grads_shared = loss_and_grads(model, examples, "shared")
    torch.testing.assert_close(logp_plain, one_forward_per_pair(model, examples), atol=1e-4, rtol=0)
    torch.testing.assert_close(logp_shared, logp_plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(loss_shared, loss_plain, atol=1e-5, rtol=0)
    for param, grad in grads_plain.items():
        torch.testing.assert_close(grads_shared[param], grad, atol=1e-4, rtol=1e-3, msg=param)
