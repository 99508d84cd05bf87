"""What sami knows about a model's internals, in one place: the architectures it supports and how to drive them.

The objective (:mod:`sami.objective.logprobs`) needs three things from a causal LM that ``transformers``
does not promise for every architecture:

1. the final hidden states from one call of the model's own ``forward`` (so peft, DDP and FSDP see the call);
2. the LM head, to apply it to the response positions only: the output embeddings, plus Gemma 2/3's final
   logit soft-capping;
3. for the shared-prefix layout, a custom 4-D attention mask that the decoder uses as given: one mask for
   every layer, or a dict {layer type: mask} for decoders that mix full and sliding-window layers.

``ARCHITECTURES`` lists the ``config.model_type`` values for which these are known; each is checked with a
tiny random model (``tests/helpers.py``): the head reproduces the model's own logits
(``tests/models/test_capabilities.py``), and both layouts match one forward per pair and each other, loss and
gradients, with sdpa and eager attention (``tests/objective/test_logprobs.py``). Other architectures are refused with
:class:`UnsupportedArchitecture`: an LM head sami does not know (Cohere's ``logit_scale``, Granite's
``logits_scaling``, ...) would give wrong log-probabilities without an error. docs/objective.md has the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sami.errors import SamiError

# attention implementations that take a custom 4-D mask, and the kind of mask they want. flex_attention would take
# an additive tensor too, but has no backward on CPU, so it is untested here and falls back to the plain layout.
_MASK_KIND = {"sdpa": "bool", "eager": "additive"}
_LAYER_TYPES = {"full_attention", "sliding_attention"}


@dataclass(frozen=True)
class Architecture:
    """How sami drives one ``config.model_type``.

    Attributes:
        mask_per_layer_type: the decoder takes a dict {layer type: 4-D mask} (``config.layer_types`` names each
            layer's type; ``config.sliding_window`` is the window of the ``sliding_attention`` layers). Otherwise
            it takes one 4-D mask for every layer, with ``config.sliding_window`` (when set) applying to all.
        final_logit_softcapping: the LM head ends with ``cap * tanh(logits / cap)``,
            ``cap = config.final_logit_softcapping`` (when set).
    """

    mask_per_layer_type: bool = False
    final_logit_softcapping: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture(),  # the embedded SmolLM2-135M
    "mistral": Architecture(),
    "mixtral": Architecture(),
    "phi3": Architecture(),
    "olmo2": Architecture(),
    "gemma": Architecture(),
    "qwen2": Architecture(mask_per_layer_type=True),
    "qwen3": Architecture(mask_per_layer_type=True),
    "qwen3_moe": Architecture(),
    "smollm3": Architecture(mask_per_layer_type=True),
    "gemma2": Architecture(mask_per_layer_type=True, final_logit_softcapping=True),
    "gemma3_text": Architecture(mask_per_layer_type=True, final_logit_softcapping=True),  # the embedded Gemma3-270M
}


class UnsupportedArchitecture(SamiError, ValueError):
    """The model's ``config.model_type`` is not in :data:`ARCHITECTURES`."""


def unwrap(model):
    """The ``transformers`` model inside peft, DDP, FSDP (1) or DeepSpeed wrappers (FSDP2 wraps nothing)."""
    while True:
        if hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):  # DDP, FSDP1, DeepSpeed
            model = model.module
        else:
            return model


def architecture(model) -> Architecture:
    """The table entry of ``model`` (wrapped or not).

    Raises:
        UnsupportedArchitecture: its ``config.model_type`` is not in :data:`ARCHITECTURES`; the message names
            the supported types and the fix.
    """
    base = unwrap(model)
    model_type = getattr(base.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"sami does not support model type {model_type!r} ({type(base).__name__}): its LM head and attention "
            f"masks are not in sami's table of architectures. Supported: {', '.join(sorted(ARCHITECTURES))}. Use a "
            "model of one of these types, or add the architecture to ARCHITECTURES in sami/models/capabilities.py "
            "and a tiny model of it to tests/helpers.py (docs/objective.md)"
        )
    return ARCHITECTURES[model_type]


# --------------------------------------------------------------------------------------------- the forward pass


def final_hidden_states(model, input_ids: torch.Tensor, **inputs) -> torch.Tensor:
    """(R, T) ids -> (R, T, H) last-layer hidden states (after the final norm), from the model's own ``forward``.

    ``inputs`` are ``attention_mask`` (and ``position_ids``) as the model takes them; the model projects one
    position only onto the vocabulary (``logits_to_keep=1``), its logits are not used.
    """
    out = model(
        input_ids=input_ids, **inputs, output_hidden_states=True, use_cache=False, return_dict=True, logits_to_keep=1
    )
    return out.hidden_states[-1]


def lm_head(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's LM head as a function: (n, H) final hidden states -> (n, V) float32 logits, as the model computes
    them (the output embeddings, then the final logit soft-capping where the architecture applies it)."""
    base = unwrap(model)
    embeddings = base.get_output_embeddings()
    cap = base.config.final_logit_softcapping if architecture(base).final_logit_softcapping else None
    # The head runs after the model's forward and again in the backward pass (recomputed chunks). An FSDP2 unit's
    # hooks would gather its parameters on that call and free them mid-backward (a crash); its parameters stay
    # gathered from the forward to the backward (accelerate's unit of norm and head, and the root, do not reshard
    # after forward), so it runs without the hooks. Other modules run with theirs (DeepSpeed ZeRO-3 gathers there).
    project = embeddings.forward if _is_fsdp2_unit(embeddings) else embeddings

    def head(h: torch.Tensor) -> torch.Tensor:
        z = project(h).float()  # (n, V)
        return cap * torch.tanh(z / cap) if cap else z

    return head


def _is_fsdp2_unit(module: torch.nn.Module) -> bool:
    if not torch.distributed.is_available():
        return False
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no FSDP2 under accelerate
        return False
    return isinstance(module, FSDPModule)


def vocab_size(model) -> int:
    """Rows of the LM head (may exceed the tokenizer's vocabulary)."""
    return unwrap(model).get_output_embeddings().weight.shape[0]


# --------------------------------------------------------------------------------------------- the shared layout


def shared_layout_problem(model) -> str | None:
    """Why ``model`` cannot take the shared layout's block mask, or None when it can."""
    return _mask_plan(model)[0]


def shared_attention_mask(model, allowed: torch.Tensor, position_ids: torch.Tensor):
    """The shared layout's block mask in the form ``model`` takes.

    Args:
        model: the model (wrapped or not).
        allowed (torch.Tensor): (R, T, T) bool, ``allowed[r, q, k]``: query position q of row r may attend to k.
        position_ids (torch.Tensor): (R, T), the rows' position ids; sliding windows are measured in them.

    Returns:
        A (R, 1, T, T) tensor (bool for sdpa, additive in the embedding dtype for eager), or a dict of them keyed by
        layer type for decoders that take one mask per layer type.

    Raises:
        ValueError: the model cannot take it (see :func:`shared_layout_problem`).
    """
    problem, windows, per_layer_type = _mask_plan(model)
    if problem is not None:
        raise ValueError(f"this batch uses the shared layout, which this model does not support: {problem}")
    base = unwrap(model)
    kind = _MASK_KIND[base.config._attn_implementation]
    dtype = base.get_input_embeddings().weight.dtype

    def finish(window: int | None) -> torch.Tensor:
        if window is None:
            m = allowed
        else:  # windows are measured in positions, as in the plain layout
            m = allowed & (position_ids[:, :, None] - position_ids[:, None, :] < window)  # (R, T, T)
        m = m[:, None]  # (R, 1, T, T)
        if kind == "bool":
            return m
        return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill_(~m, torch.finfo(dtype).min)

    if per_layer_type:
        return {layer_type: finish(window) for layer_type, window in windows.items()}
    return finish(windows[None])


def _mask_plan(model) -> tuple[str | None, dict, bool]:
    """(problem or None, {layer type (None: every layer): sliding window or None}, whether a dict is taken)."""
    arch = architecture(model)
    config = unwrap(model).config
    attn = getattr(config, "_attn_implementation", None)
    if attn not in _MASK_KIND:
        return f"attention implementation {attn!r} takes no custom 4-D mask here (sdpa and eager do)", {}, False
    if getattr(config, "use_bidirectional_attention", False):
        return "the model uses bidirectional attention", {}, False
    window = getattr(config, "sliding_window", None)
    if not arch.mask_per_layer_type:
        return None, {None: window}, False
    types = set(config.layer_types)
    if types - _LAYER_TYPES:
        return f"layer types {sorted(types - _LAYER_TYPES)} are not supported", {}, False
    return None, {t: window if t == "sliding_attention" else None for t in types}, True
