"""sami.models.capabilities: the table of architectures, unwrapping, the LM head, the block mask's forms."""

from __future__ import annotations

import pytest
import torch
from helpers import FAMILIES, VOCAB, tiny_model

from sami.errors import SamiError
from sami.models.capabilities import (
    ARCHITECTURES,
    UnsupportedArchitecture,
    architecture,
    final_hidden_states,
    lm_head,
    shared_attention_mask,
    shared_layout_problem,
    unwrap,
)
from sami.objective import ContrastiveExample, collate_contrastive, contrastive_logprobs, resolve_layout


@pytest.mark.parametrize("family", FAMILIES)
def test_lm_head_reproduces_the_models_logits(family):
    """What a runtime self-check would guard, checked once here for every supported architecture: the final
    hidden states and the head (incl. Gemma's soft-capping) give the model's own logits at every position."""
    model = tiny_model(family, scale=10.0)
    ids = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = lm_head(model)(final_hidden_states(model, ids, attention_mask=torch.ones_like(ids)))
        theirs = model(input_ids=ids).logits.float()
    assert ours.shape == theirs.shape == (2, 12, model.config.vocab_size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_softcapping_is_applied_where_the_architecture_applies_it():
    capped, plain = tiny_model("gemma3_text", scale=10.0), tiny_model("llama", scale=10.0)
    h = torch.randn(3, 32) * 10
    assert lm_head(capped)(h).abs().max() <= capped.config.final_logit_softcapping
    plain.config.final_logit_softcapping = 1.0  # a stray field: Llama's head ignores it, and so does sami
    torch.testing.assert_close(lm_head(plain)(h), plain.lm_head(h))


def test_unsupported_architecture_is_refused_whatever_the_layout():
    model = tiny_model("cohere")  # its head multiplies the logits by logit_scale, which sami does not reproduce
    for layout in ("auto", "plain", "shared"):
        with pytest.raises(UnsupportedArchitecture, match="model type 'cohere'") as error:
            resolve_layout(model, layout)
    message = str(error.value)
    assert "llama" in message and "gemma3_text" in message and "sami/models/capabilities.py" in message
    assert isinstance(error.value, SamiError) and isinstance(error.value, ValueError)
    batch = collate_contrastive([ContrastiveExample([[1], [2]], [[3], [4]])], "plain", pad_token_id=0)
    with pytest.raises(UnsupportedArchitecture):
        contrastive_logprobs(model, batch)


def test_unwrap_peft_and_module_wrappers():
    from peft import LoraConfig, get_peft_model

    base = tiny_model()
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules="all-linear"))

    class Wrapper(torch.nn.Module):  # DDP, FSDP1 and DeepSpeed keep the model in .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert unwrap(base) is base
    assert unwrap(peft_model) is base
    assert unwrap(Wrapper(peft_model)) is base
    assert architecture(Wrapper(peft_model)) is ARCHITECTURES["llama"]


def _positions() -> torch.Tensor:
    """The position ids of one shared row [prefix x3 | y_0 x3 | y_1 x3]: y_1 continues from position 3, like y_0."""
    batch = collate_contrastive([ContrastiveExample([[1, 2, 3], [4]], [[5, 6, 7], [8, 9, 10]])], "shared", 0)
    return batch["position_ids"][:1]  # (1, 9)


def test_one_mask_with_the_window_folded_in():
    """Mistral: one mask for every layer, its 5-position window applied (measured in position ids)."""
    position_ids = _positions()
    allowed = torch.ones(1, 9, 9, dtype=torch.bool).tril()
    mask = shared_attention_mask(tiny_model("mistral"), allowed, position_ids)
    assert isinstance(mask, torch.Tensor) and mask.shape == (1, 1, 9, 9) and mask.dtype == torch.bool
    distance = position_ids[0][:, None] - position_ids[0][None, :]
    assert torch.equal(mask[0, 0], allowed[0] & (distance < 5))
    assert not mask[0, 0, 5, 0] and mask[0, 0, 8, 2]  # y_0's third token: too far; y_1's third token: in reach


def test_a_dict_of_masks_for_decoders_that_mix_layer_types():
    position_ids = _positions()
    allowed = torch.ones(1, 9, 9, dtype=torch.bool).tril()
    masks = shared_attention_mask(tiny_model("gemma3_text", attn="eager"), allowed, position_ids)
    assert set(masks) == {"full_attention", "sliding_attention"}
    full, sliding = masks["full_attention"][0, 0] == 0, masks["sliding_attention"][0, 0] == 0  # additive for eager
    assert masks["full_attention"].dtype == torch.float32
    assert torch.equal(full, allowed[0])
    distance = position_ids[0][:, None] - position_ids[0][None, :]
    assert torch.equal(sliding, allowed[0] & (distance < 6))


def test_shared_layout_problems_name_the_reason():
    assert shared_layout_problem(tiny_model()) is None
    assert "flex_attention" in shared_layout_problem(tiny_model(attn="flex_attention"))
    bidirectional = tiny_model("gemma3_text", use_bidirectional_attention=True)
    assert "bidirectional" in shared_layout_problem(bidirectional)
    with pytest.raises(ValueError, match="does not support"):
        shared_attention_mask(bidirectional, torch.ones(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.long))
