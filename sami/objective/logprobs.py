"""The contrastive matrix L[b, i, j] = log p(y_j | c_i, x_b), from token ids to a (B, C, C) tensor.

Two layouts compute the same matrix (docs/objective.md has the pictures):

* ``plain``: one right-padded row per (query, constitution, response), ``[c_i + x | y_j]``:
  B * C * C rows, the prefix encoded C times over.
* ``shared``: one row per (query, constitution), ``[c_i + x | y_1 | y_2 | ... | y_C]``; a block mask
  lets each response attend to the prefix and to itself only, and its position ids continue from
  the end of the prefix, so every response sees exactly what it would see in its own plain row.
  B * C rows, each prefix encoded once. Rows are padded, not packed.

Both layouts score only the response tokens: the model returns its final hidden states, the
positions that predict response tokens are gathered, and the LM head plus log-softmax run over
them in chunks (recomputed in the backward pass), so no (rows x length x vocabulary) logits and
no full (tokens x vocabulary) float32 matrix are kept alive.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
from dataclasses import dataclass
from functools import cache

import torch
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

LAYOUTS = ("plain", "shared")
AGGREGATIONS = ("mean", "sum")
# attention implementations that take a custom 4-D mask, and the kind of mask they want. flex_attention would take
# an additive tensor too, but has no backward on CPU, so it is untested here and falls back to 'plain'.
_MASK_KIND = {"sdpa": "bool", "eager": "additive"}
_LAYER_TYPES = {"full_attention", "sliding_attention"}
_HEAD_CHUNK_ELEMENTS = 2**26  # logits per LM-head chunk: 256 MiB in float32 (about 520 tokens at a 128k vocab)


@dataclass
class ContrastiveExample:
    """Token ids for one query x: C prompts (prompt_ids[i] = constitution c_i + x, ready-made ids incl. any BOS/chat
    template) and C responses (response_ids[j] = ids of y_j, non-empty, without padding; EOS is included only if the
    caller wants it scored). response_ids[i] was generated under prompt_ids[i]: the diagonal is the matched pairs."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]


# --------------------------------------------------------------------------------------------- layout


def resolve_layout(model, requested: str = "auto") -> str:
    """Pick the layout for ``model``: 'plain' | 'shared'.

    Args:
        model: a causal LM (``transformers`` model, optionally wrapped by peft, DDP or FSDP).
        requested (str): 'auto' picks 'shared' when the model takes custom 4-D attention masks
            (eager or sdpa attention, masks built by ``transformers.masking_utils``), else 'plain'
            with a warning saying why (flash and flex attention fall back); 'shared' insists (ValueError
            if unsupported); 'plain' is always possible.

    Returns:
        str: 'plain' or 'shared'.
    """
    if requested not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto', 'plain' or 'shared'; got {requested!r}")
    if requested == "plain":
        return "plain"
    problem = _mask_plan(_unwrap(model))[0]
    if problem is None:
        logger.info("sami: using the shared-prefix layout (one row per query and constitution)")
        return "shared"
    if requested == "shared":
        raise ValueError(
            f"layout='shared' is not available for this model: {problem}. Load it with attn_implementation='sdpa' "
            "(or 'eager'), or use layout='plain'"
        )
    logger.warning(
        "sami: shared-prefix layout unavailable (%s); falling back to the plain layout (C x C rows)", problem
    )
    return "plain"


# --------------------------------------------------------------------------------------------- collation


def collate_contrastive(examples: list[ContrastiveExample], layout: str, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Tensors for one micro-batch of B queries that share the same C.

    Args:
        examples (list[ContrastiveExample]): B examples, each with C >= 2 prompts and C non-empty responses.
        layout (str): 'plain' (B*C*C rows) or 'shared' (B*C rows), as returned by ``resolve_layout``.
        pad_token_id (int): id used for padding (never attended to, never scored).

    Returns:
        dict[str, torch.Tensor]: with R rows of length T and N scored response tokens:
            ``input_ids`` (R, T); ``attention_mask`` (R, T) for 'plain', or ``segment_ids`` (R, T) and
            ``position_ids`` (R, T) for 'shared' (segment 0 = prefix, j + 1 = response j, -1 = padding);
            ``token_rows``, ``token_positions`` (N,): where the hidden state that predicts each response token is;
            ``token_labels`` (N,): the response token; ``token_cells`` (N,): its cell ``(b * C + i) * C + j``;
            ``response_lengths`` (B, C): the number of tokens of y_j.

    Raises:
        ValueError: no examples, an unknown layout, C < 2, C differing between prompts and responses or between
            examples, an empty prompt or an empty response.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'plain' or 'shared' (see resolve_layout); got {layout!r}")
    C = _check_examples(examples)
    groups = [list(range(C))] if layout == "shared" else [[j] for j in range(C)]  # the responses of one row
    rows, segments, spans, prefix_lens = [], [], [], []  # per row: ids, segment ids, (cell, start, length) per response
    for b, ex in enumerate(examples):
        for i, prompt in enumerate(ex.prompt_ids):
            for group in groups:
                ids, seg, row_spans = list(prompt), [0] * len(prompt), []
                for j in group:
                    row_spans.append(((b * C + i) * C + j, len(ids), len(ex.response_ids[j])))
                    ids += ex.response_ids[j]
                    seg += [j + 1] * len(ex.response_ids[j])
                rows.append(ids)
                segments.append(seg)
                spans.append(row_spans)
                prefix_lens.append(len(prompt))
    R, T = len(rows), max(len(r) for r in rows)
    input_ids = torch.full((R, T), pad_token_id, dtype=torch.long)
    segment_ids = torch.full((R, T), -1, dtype=torch.long)
    position_ids = torch.zeros((R, T), dtype=torch.long)
    token_rows, token_positions, token_labels, token_cells = [], [], [], []
    for r, (ids, seg, row_spans, prefix_len) in enumerate(zip(rows, segments, spans, prefix_lens)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        segment_ids[r, : len(ids)] = torch.tensor(seg)
        position_ids[r, :prefix_len] = torch.arange(prefix_len)
        for cell, start, length in row_spans:
            position_ids[r, start : start + length] = torch.arange(prefix_len, prefix_len + length)
            # y_j[0] is predicted by the last prefix token, y_j[t] by y_j[t - 1]
            token_positions += [prefix_len - 1] + list(range(start, start + length - 1))
            token_rows += [r] * length
            token_labels += ids[start : start + length]
            token_cells += [cell] * length
    batch = {"input_ids": input_ids}
    if layout == "plain":
        batch["attention_mask"] = (segment_ids >= 0).long()  # (R, T), right padding
    else:
        batch["segment_ids"] = segment_ids  # (R, T)
        batch["position_ids"] = position_ids  # (R, T)
    batch["token_rows"] = torch.tensor(token_rows, dtype=torch.long)  # (N,)
    batch["token_positions"] = torch.tensor(token_positions, dtype=torch.long)  # (N,)
    batch["token_labels"] = torch.tensor(token_labels, dtype=torch.long)  # (N,)
    batch["token_cells"] = torch.tensor(token_cells, dtype=torch.long)  # (N,)
    batch["response_lengths"] = torch.tensor([[len(y) for y in ex.response_ids] for ex in examples])  # (B, C)
    return batch


def _check_examples(examples: list[ContrastiveExample]) -> int:
    if not examples:
        raise ValueError("collate_contrastive needs at least one example")
    C = len(examples[0].prompt_ids)
    for b, ex in enumerate(examples):
        if len(ex.prompt_ids) != len(ex.response_ids):
            raise ValueError(
                f"example {b} has {len(ex.prompt_ids)} prompts but {len(ex.response_ids)} responses: "
                "there must be one response per constitution"
            )
        if len(ex.prompt_ids) < 2:
            raise ValueError(f"example {b} has C = {len(ex.prompt_ids)} constitutions; SAMI needs C >= 2")
        if len(ex.prompt_ids) != C:
            raise ValueError(
                f"example {b} has C = {len(ex.prompt_ids)} but example 0 has C = {C}: a micro-batch needs the same C; "
                "group examples by C"
            )
        for i, prompt in enumerate(ex.prompt_ids):
            if len(prompt) == 0:
                raise ValueError(f"example {b}, prompt {i} is empty: a prompt needs at least one token (e.g. BOS)")
        for j, response in enumerate(ex.response_ids):
            if len(response) == 0:
                raise ValueError(
                    f"example {b}, response {j} is empty: drop such pairs upstream (generation filters count them); "
                    "an empty response has no log-probability"
                )
    return C


# --------------------------------------------------------------------------------------------- the matrix


def contrastive_logprobs(
    model, batch: dict[str, torch.Tensor], aggregation: str = "mean", *, chunk_size: int | None = None
) -> torch.Tensor:
    """The contrastive matrix of a micro-batch.

    Args:
        model: the causal LM being trained (``transformers`` model, optionally wrapped by peft, DDP or FSDP);
            it is called once, through its own ``forward``.
        batch (dict[str, torch.Tensor]): from ``collate_contrastive`` (either layout); moved to the model's device here.
        aggregation (str): 'mean' (per-token mean over y_j, the paper's default) or 'sum'.
        chunk_size (int | None): response tokens per LM-head chunk; default: about 2**26 logits per chunk.

    Returns:
        torch.Tensor: (B, C, C) float32, ``L[b, i, j] = log p(y_j | c_i, x_b)``, differentiable.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be 'mean' or 'sum'; got {aggregation!r}")
    base = _unwrap(model)
    device = _device_of(model)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    B, C = batch["response_lengths"].shape
    if "segment_ids" in batch:  # shared layout: the block mask is built here, where the model's needs are known
        inputs = {
            "attention_mask": _shared_attention_mask(base, batch["segment_ids"], batch["position_ids"]),
            "position_ids": batch["position_ids"],
        }
    else:
        inputs = {"attention_mask": batch["attention_mask"]}
    hidden = _final_hidden_states(model, base, batch["input_ids"], **inputs)  # (R, T, H)
    h = hidden[batch["token_rows"], batch["token_positions"]]  # (N, H): the states that predict response tokens
    token_logp = _token_logprobs(base, h, batch["token_labels"], chunk_size)  # (N,)
    logp = token_logp.new_zeros(B * C * C).index_add(0, batch["token_cells"], token_logp)  # (B*C*C,) sums
    logp = logp.view(B, C, C)  # (B, C, C), logp[b, i, j] = log p(y_j | c_i, x_b)
    if aggregation == "mean":
        logp = logp / batch["response_lengths"].unsqueeze(1)  # (B, 1, C): |y_j| broadcast over i
    return logp


_HEAD_CHECKED: weakref.WeakSet = weakref.WeakSet()


def _final_hidden_states(model, base, input_ids: torch.Tensor, **inputs) -> torch.Tensor:
    """Last-layer hidden states (after the final norm) from the model's own forward, logits for one position only."""
    kwargs = {"output_hidden_states": True, "use_cache": False, "return_dict": True}
    if "logits_to_keep" in inspect.signature(type(base).forward).parameters:
        kwargs["logits_to_keep"] = 1  # the model's own logits: (R, 1, V), used only for the self-check below
    out = model(input_ids=input_ids, **inputs, **kwargs)
    hidden = out.hidden_states[-1]  # (R, T, H)
    if base not in _HEAD_CHECKED:  # once per model: our LM head must reproduce the model's logits
        with torch.no_grad():
            ours = _head_logits(base, hidden[:, -1].detach())  # (R, V)
            theirs = out.logits[:, -1].float()  # (R, V)
        err, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
        if not err <= 1e-2 * (1 + scale):
            raise RuntimeError(
                f"sami's LM head does not reproduce the logits of {type(base).__name__} (max error {err:.3g}): its "
                "output post-processing is not supported; please open an issue with the model name"
            )
        _HEAD_CHECKED.add(base)
    return hidden


def _head_logits(base, h: torch.Tensor) -> torch.Tensor:
    """(n, H) -> (n, V) float32 logits, as the model computes them (incl. Gemma's final soft-capping)."""
    z = base.get_output_embeddings()(h).float()  # (n, V)
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        z = cap * torch.tanh(z / cap)
    return z


def _token_logprobs(base, h: torch.Tensor, labels: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """log p(label | h) per token, (N, H) -> (N,), the LM head and log-softmax in recomputed chunks."""

    def chunk_logp(h_c: torch.Tensor, y_c: torch.Tensor) -> torch.Tensor:
        z = _head_logits(base, h_c)  # (n, V) float32, alive only inside this chunk
        return z.gather(1, y_c[:, None]).squeeze(1) - z.logsumexp(dim=1)  # (n,)

    vocab = base.get_output_embeddings().weight.shape[0]
    n = chunk_size or max(16, _HEAD_CHUNK_ELEMENTS // vocab)
    out = []
    for s in range(0, h.shape[0], n):
        if torch.is_grad_enabled():  # keep only h for backward; the chunk's logits are recomputed there
            out.append(checkpoint(chunk_logp, h[s : s + n], labels[s : s + n], use_reentrant=False))
        else:
            out.append(chunk_logp(h[s : s + n], labels[s : s + n]))
    return torch.cat(out)  # (N,)


# --------------------------------------------------------------------------------------------- the block mask


def _shared_attention_mask(base, segment_ids: torch.Tensor, position_ids: torch.Tensor):
    """The 4-D mask(s) of the shared layout: each response sees the prefix and itself, causally.

    Returns a (R, 1, T, T) tensor (bool for sdpa, additive float otherwise), or a dict of them keyed by layer type
    for models that mix full and sliding-window attention layers.
    """
    problem, windows, as_dict = _mask_plan(base)
    if problem is not None:
        raise ValueError(f"this batch uses the shared layout, which this model does not support: {problem}")
    T = segment_ids.shape[1]
    idx = torch.arange(T, device=segment_ids.device)
    causal = idx[:, None] >= idx[None, :]  # (T, T)
    seg_q, seg_k = segment_ids[:, :, None], segment_ids[:, None, :]  # (R, T, 1), (R, 1, T)
    allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))  # (R, T, T): the prefix or one's own segment
    allowed |= torch.eye(T, dtype=torch.bool, device=idx.device)  # padding sees itself: no all-masked row, no NaN
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

    if as_dict:
        return {layer_type: finish(window) for layer_type, window in windows.items()}
    return finish(windows[None])


def _mask_plan(base) -> tuple[str | None, dict, bool]:
    """(problem or None, {layer type: sliding window or None}, whether the model takes a dict of masks)."""
    config = base.config
    attn = getattr(config, "_attn_implementation", None)
    if attn not in _MASK_KIND:
        return f"attention implementation {attn!r} takes no custom 4-D mask here (sdpa and eager do)", {}, False
    try:
        decoder = base.get_decoder()
    except (AttributeError, ValueError):
        decoder = base
    decoder_cls = type(decoder)
    if getattr(sys.modules.get(decoder_cls.__module__), "create_causal_mask", None) is None:
        return f"{decoder_cls.__name__} does not build its masks with transformers.masking_utils", {}, False
    if getattr(config, "use_bidirectional_attention", False):
        return "the model uses bidirectional attention", {}, False
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not layer_types:  # one mask for every layer; sliding if the config has a window (Mistral)
        return None, {None: window}, False
    types = set(layer_types)
    if types - _LAYER_TYPES:
        return f"layer types {sorted(types - _LAYER_TYPES)} are not supported", {}, False
    if _takes_mask_dict(decoder_cls):
        return None, {t: window if t == "sliding_attention" else None for t in types}, True
    if len(types) == 1:
        return None, {None: window if types == {"sliding_attention"} else None}, False
    return "the model mixes full and sliding-window layers but takes a single mask", {}, False


@cache
def _takes_mask_dict(decoder_cls: type) -> bool:
    try:
        return "causal_mask_mapping" in inspect.getsource(decoder_cls.forward)
    except (OSError, TypeError):
        return False


# --------------------------------------------------------------------------------------------- helpers


def _unwrap(model):
    """The ``transformers`` model inside peft, DDP, FSDP or DeepSpeed wrappers."""
    while True:
        if hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):  # DDP, FSDP1, DeepSpeed
            model = model.module
        else:
            return model


def _device_of(model) -> torch.device:
    return next(model.parameters()).device
