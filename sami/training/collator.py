"""Records -> the contrastive batch: render, tokenise as segments, check the boundary, collate.

For each record of a micro-batch the collator

1. renders each of its C constitutions, the principle order shuffled by a generator seeded with
   (seed, query id, epoch) when ``shuffle_principles`` is on (the paper's augmentation; the same
   prompt in every process and after a resume, a new order each epoch);
2. renders the prompt with the record's own template (the one generation used);
3. tokenises the prompt and the response as separate segments (:func:`encode_segments`), so a
   BPE merge across the boundary can never move the response mask (a pitfall of the authors'
   released code); truncates the response to ``max_response_length`` and appends EOS iff
   ``score_eos`` (and the response ended there);
4. builds a :class:`ContrastiveExample` and calls :func:`collate_contrastive`, then checks that
   the tokens the loss will score are exactly the response ids.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from sami.constitutions import Constitution, render_constitution
from sami.errors import SamiError
from sami.generation.prompts import PromptTemplate, encode_segments
from sami.objective.logprobs import ContrastiveExample, collate_contrastive
from sami.training.dataset import response_text


class PromptTooLong(SamiError, ValueError):
    """A prompt exceeds ``max_prompt_length``."""


def shuffle_rng(seed: int, query_id: str, epoch: int) -> random.Random:
    """The principle-order generator of one record in one epoch (stable across processes and runs)."""
    return random.Random(f"sami:shuffle:{seed}:{query_id}:{epoch}")


class SAMICollator:
    """Collates generation records into the batch :func:`contrastive_logprobs` takes.

    Args:
        tokenizer: the model's tokenizer (needs a pad token; an EOS token if ``score_eos``).
        layout (str): ``"plain"`` or ``"shared"`` (see :func:`resolve_layout`).
        score_eos (bool): append EOS to responses that ended (finish reason not ``"length"``) and score it.
        shuffle_principles (bool): shuffle each constitution's principles, seeded by (seed, query id, epoch).
        seed (int): the shuffle seed.
        max_prompt_length (int | None): reject longer prompts (:class:`PromptTooLong`).
        max_response_length (int | None): truncate longer responses.

    Attributes:
        epoch (int): the epoch the shuffle is seeded with; the trainer sets it at each epoch start.
        training (bool): False turns the shuffle off (evaluation scores the prompts as generated).

    Returns (``__call__``):
        dict[str, torch.Tensor]: the tensors of :func:`collate_contrastive` (``input_ids``, ``response_lengths``
        (B, C), ...).
    """

    def __init__(
        self,
        tokenizer,
        *,
        layout: str = "plain",
        score_eos: bool = False,
        shuffle_principles: bool = True,
        seed: int = 0,
        max_prompt_length: int | None = None,
        max_response_length: int | None = None,
    ):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token")
        if score_eos and tokenizer.eos_token_id is None:
            raise ValueError("score_eos=True but the tokenizer has no EOS token; set score_eos=False")
        self.tokenizer = tokenizer
        self.layout = layout
        self.score_eos = score_eos
        self.shuffle_principles = shuffle_principles
        self.seed = seed
        self.max_prompt_length = max_prompt_length
        self.max_response_length = max_response_length
        self.epoch = 0
        self.training = True

    # ----------------------------------------------------------------------------------- one record

    def prompts(self, record: dict, epoch: int | None = None, shuffle: bool | None = None) -> list[str]:
        """The C prompt texts of a record, principles shuffled as for ``epoch`` when ``shuffle``."""
        shuffle = self.shuffle_principles and self.training if shuffle is None else shuffle
        epoch = self.epoch if epoch is None else epoch
        rng = shuffle_rng(self.seed, str(record["query_id"]), epoch) if shuffle else None
        template = PromptTemplate(**record["template"])
        texts = []
        for data in record["constitutions"]:
            constitution = render_constitution(Constitution.from_dict(data), rng)
            texts.append(template.render(self.tokenizer, constitution, record["query"]))
        return texts

    def encode(self, record: dict, epoch: int | None = None, shuffle: bool | None = None) -> ContrastiveExample:
        """Token ids of one record: C prompts and C responses, tokenised as separate segments."""
        template = PromptTemplate(**record["template"])
        prompt_ids, response_ids = [], []
        finish = record.get("finish_reasons") or [None] * len(record["responses"])
        for j, prompt in enumerate(self.prompts(record, epoch, shuffle)):
            p_ids, r_ids = encode_segments(self.tokenizer, template, prompt, response_text(record, j))
            if self.max_prompt_length is not None and len(p_ids) > self.max_prompt_length:
                raise PromptTooLong(
                    f"query {record['query_id']!r}: prompt {j} has {len(p_ids)} tokens > max_prompt_length="
                    f"{self.max_prompt_length}; raise max_prompt_length (or set it to None), or drop the query"
                )
            ended = finish[j] != "length"
            if self.max_response_length is not None and len(r_ids) > self.max_response_length:
                r_ids, ended = r_ids[: self.max_response_length], False
            if self.score_eos and ended:
                r_ids = r_ids + [self.tokenizer.eos_token_id]
            if not p_ids or not r_ids:
                which = "prompt" if not p_ids else "response"
                raise ValueError(f"query {record['query_id']!r}: {which} {j} tokenises to no tokens; drop the record")
            prompt_ids.append(p_ids)
            response_ids.append(r_ids)
        return ContrastiveExample(prompt_ids=prompt_ids, response_ids=response_ids)

    # ----------------------------------------------------------------------------------- a batch

    def __call__(self, records: list[dict]) -> dict[str, Any]:
        counts = {len(r["constitutions"]) for r in records}
        if len(counts) > 1:
            ids = [(r["query_id"], len(r["constitutions"])) for r in records]
            raise ValueError(
                f"a micro-batch mixes numbers of constitutions {ids}; every record of a micro-batch needs the same C: "
                "generate with one C per run, or train with per_device_train_batch_size=1"
            )
        examples = [self.encode(record) for record in records]
        batch = collate_contrastive(examples, self.layout, self.tokenizer.pad_token_id)
        check_boundary(batch, examples)
        # response_lengths first: Trainer.evaluation_loop reads the batch size (B queries) off the first tensor
        return {"response_lengths": batch["response_lengths"], **batch}


def check_boundary(batch: dict[str, torch.Tensor], examples: list[ContrastiveExample]) -> None:
    """Assert that the scored tokens of every cell (b, i, j) are exactly ``response_ids[j]`` of example b.

    The loss scores ``token_labels`` grouped by ``token_cells``; if the prompt/response boundary had
    moved, a cell would hold prompt tokens or miss response tokens.
    """
    C = len(examples[0].prompt_ids)
    cells, labels = batch["token_cells"].tolist(), batch["token_labels"].tolist()
    scored: dict[int, list[int]] = {}
    for cell, label in zip(cells, labels):
        scored.setdefault(cell, []).append(label)
    for b, example in enumerate(examples):
        for i in range(C):
            for j, expected in enumerate(example.response_ids):
                if scored.get((b * C + i) * C + j) != expected:
                    raise AssertionError(
                        f"prompt/response boundary moved in example {b}, cell ({i}, {j}): the scored tokens are not "
                        "the response ids; please report this as a bug"
                    )
