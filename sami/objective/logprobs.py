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
no full (tokens x vocabulary) float32 matrix are kept alive. What this needs from the model (its
final hidden states, its LM head, the block mask in the form its decoder takes) comes from
:mod:`sami.models.capabilities`, which lists the supported architectures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from sami.errors import ConfigError
from sami.models.capabilities import (
    architecture,
    final_hidden_states,
    lm_head,
    shared_attention_mask,
    shared_layout_problem,
    vocab_size,
)

logger = logging.getLogger(__name__)

LAYOUTS = ("plain", "shared")
AGGREGATIONS = ("mean", "sum")
_HEAD_CHUNK_ELEMENTS = 2**26  # logits per LM-head chunk: 256 MiB in float32 (about 520 tokens at a 128k vocab)


@dataclass
class ContrastiveExample:
    """Token ids for one query x: C prompts (prompt_ids[i] = constitution c_i + x, ready-made ids incl. any BOS/chat
    template) and C responses (response_ids[j] = ids of y_j, non-empty, without padding; EOS is included only if the
    caller wants it scored). response_ids[i] was generated under prompt_ids[i]: the diagonal is the matched pairs."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]


def check_layout(layout: str, *, auto: bool = False) -> None:
    """The one validation of a layout setting: 'plain' or 'shared', and 'auto' where ``auto`` allows it."""
    allowed = ("auto", *LAYOUTS) if auto else LAYOUTS
    if layout not in allowed:
        names = ", ".join(repr(name) for name in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ConfigError(f"layout must be {names}; got {layout!r}")


def check_aggregation(aggregation: str) -> None:
    """The one validation of the aggregation setting."""
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"aggregation must be 'mean' or 'sum' (paper: 'mean'); got {aggregation!r}")


# --------------------------------------------------------------------------------------------- layout


def resolve_layout(model, requested: str = "auto") -> str:
    """Pick the layout for ``model``: 'plain' | 'shared'.

    Args:
        model: a causal LM of a supported architecture (``sami.models.capabilities.ARCHITECTURES``), optionally
            wrapped by peft, DDP or FSDP.
        requested (str): 'auto' picks 'shared' when the model takes the block mask (eager or sdpa attention), else
            'plain' with a warning saying why (flash and flex attention fall back); 'shared' insists (ValueError
            if unavailable); 'plain' is always possible.

    Returns:
        str: 'plain' or 'shared'.

    Raises:
        UnsupportedArchitecture: the model's architecture is not in the table, whatever the layout.
    """
    check_layout(requested, auto=True)
    architecture(model)  # an unsupported architecture is refused here, in either layout
    if requested == "plain":
        return "plain"
    problem = shared_layout_problem(model)
    if problem is None:
        logger.info("sami: using the shared-prefix layout (one row per query and constitution)")
        return "shared"
    if requested == "shared":
        raise ConfigError(
            f"layout='shared' is not available for this model: {problem}. Load it with --attn_implementation sdpa "
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
    check_layout(layout)
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
        model: the causal LM being trained (a supported architecture, optionally wrapped by peft, DDP or FSDP);
            it is called once, through its own ``forward``.
        batch (dict[str, torch.Tensor]): from ``collate_contrastive`` (either layout); moved to the model's device here.
        aggregation (str): 'mean' (per-token mean over y_j, the paper's default) or 'sum'.
        chunk_size (int | None): response tokens per LM-head chunk; default: about 2**26 logits per chunk.

    Returns:
        torch.Tensor: (B, C, C) float32, ``L[b, i, j] = log p(y_j | c_i, x_b)``, differentiable.
    """
    check_aggregation(aggregation)
    return contrastive_matrix(response_token_logprobs(model, batch, chunk_size=chunk_size), batch, aggregation)


def response_token_logprobs(
    model, batch: dict[str, torch.Tensor], *, chunk_size: int | None = None
) -> torch.Tensor:
    """log p(token | its prefix) of every scored response token of a micro-batch, (N,) float32, differentiable.

    Token n belongs to the cell ``batch["token_cells"][n]`` of the matrix (see ``collate_contrastive``);
    :func:`contrastive_matrix` sums or averages them per cell. Arguments as for :func:`contrastive_logprobs`.
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if "segment_ids" in batch:  # shared layout: the block mask, in the form this model takes it
        allowed = _block_mask(batch["segment_ids"])  # (R, T, T)
        inputs = {
            "attention_mask": shared_attention_mask(model, allowed, batch["position_ids"]),
            "position_ids": batch["position_ids"],
        }
    else:
        inputs = {"attention_mask": batch["attention_mask"]}
    hidden = final_hidden_states(model, batch["input_ids"], **inputs)  # (R, T, H)
    h = hidden[batch["token_rows"], batch["token_positions"]]  # (N, H): the states that predict response tokens
    return _token_logprobs(model, h, batch["token_labels"], chunk_size)  # (N,)


def contrastive_matrix(token_logp: torch.Tensor, batch: dict[str, torch.Tensor], aggregation: str) -> torch.Tensor:
    """(N,) response-token log-probs -> the (B, C, C) matrix: their sum per cell, divided by |y_j| for 'mean'."""
    B, C = batch["response_lengths"].shape
    cells = batch["token_cells"].to(token_logp.device)
    logp = token_logp.new_zeros(B * C * C).index_add(0, cells, token_logp)  # (B*C*C,) sums
    logp = logp.view(B, C, C)  # (B, C, C), logp[b, i, j] = log p(y_j | c_i, x_b)
    if aggregation == "mean":
        logp = logp / batch["response_lengths"].to(logp.device).unsqueeze(1)  # (B, 1, C): |y_j| broadcast over i
    return logp


def _block_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(R, T) segment ids -> (R, T, T) bool: each response attends to the prefix and to itself, causally."""
    T = segment_ids.shape[1]
    idx = torch.arange(T, device=segment_ids.device)
    causal = idx[:, None] >= idx[None, :]  # (T, T)
    seg_q, seg_k = segment_ids[:, :, None], segment_ids[:, None, :]  # (R, T, 1), (R, 1, T)
    allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))  # (R, T, T): the prefix or one's own segment
    return allowed | torch.eye(T, dtype=torch.bool, device=idx.device)  # padding sees itself: no all-masked row, no NaN


def _token_logprobs(model, h: torch.Tensor, labels: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    """log p(label | h) per token, (N, H) -> (N,), the LM head and log-softmax in recomputed chunks."""
    head = lm_head(model)

    def chunk_logp(h_c: torch.Tensor, y_c: torch.Tensor) -> torch.Tensor:
        z = head(h_c)  # (n, V) float32, alive only inside this chunk
        return z.gather(1, y_c[:, None]).squeeze(1) - z.logsumexp(dim=1)  # (n,)

    n = chunk_size or max(16, _HEAD_CHUNK_ELEMENTS // vocab_size(model))
    out = []
    for s in range(0, h.shape[0], n):
        if torch.is_grad_enabled():  # keep only h for backward; the chunk's logits are recomputed there
            out.append(checkpoint(chunk_logp, h[s : s + n], labels[s : s + n], use_reentrant=False))
        else:
            out.append(chunk_logp(h[s : s + n], labels[s : s + n]))
    return torch.cat(out)  # (N,)
