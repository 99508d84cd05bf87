"""The collator: exact ids and masks, the prompt/response boundary, shuffling, truncation, errors."""

from __future__ import annotations

import pytest
import torch
from helpers import make_record

from sami.constitutions import Constitution, render_constitution
from sami.generation.prompts import PromptTemplate
from sami.training import PromptTooLong, SAMICollator, SAMIDataset
from sami.training.dataset import response_text


def _ids(tokenizer, text, special=False):
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def _generated_prompts(tokenizer, record):
    """The prompts as the generator renders them (principles in their sampled order)."""
    template = PromptTemplate(**record["template"])
    return [
        template.render(tokenizer, render_constitution(Constitution.from_dict(c)), record["query"])
        for c in record["constitutions"]
    ]


def test_plain_layout_exact_ids_and_masks(tokenizer):
    record = make_record(0, C=2, kind="base", task="summarisation")
    collator = SAMICollator(tokenizer, layout="plain", shuffle_principles=False)
    batch = collator([record])

    prompts = _generated_prompts(tokenizer, record)
    assert collator.prompts(record) == prompts  # training renders exactly what generation rendered
    assert prompts[0].endswith("Summary:")
    p_ids = [_ids(tokenizer, p, special=True) for p in prompts]
    r_ids = [_ids(tokenizer, " " + r) for r in record["responses"]]  # base templates: one space separator

    rows = [p_ids[i] + r_ids[j] for i in range(2) for j in range(2)]  # row (i, j) = [c_i + x | y_j]
    T = max(map(len, rows))
    pad = tokenizer.pad_token_id
    expected_ids = torch.tensor([row + [pad] * (T - len(row)) for row in rows])
    expected_mask = torch.tensor([[1] * len(row) + [0] * (T - len(row)) for row in rows])
    assert torch.equal(batch["input_ids"], expected_ids)
    assert torch.equal(batch["attention_mask"], expected_mask)
    assert batch["response_lengths"].tolist() == [[len(r_ids[0]), len(r_ids[1])]]
    assert list(batch)[0] == "response_lengths"  # the Trainer reads B off the first tensor

    # every scored token: cell (i, j) scores exactly y_j, each predicted from the position before it
    for r, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        sel = batch["token_cells"] == i * 2 + j
        assert batch["token_labels"][sel].tolist() == r_ids[j]
        assert batch["token_rows"][sel].tolist() == [r] * len(r_ids[j])
        start = len(p_ids[i])
        assert batch["token_positions"][sel].tolist() == list(range(start - 1, start - 1 + len(r_ids[j])))


def test_boundary_where_joint_tokenisation_merges(tokenizer):
    """A chat prompt ends in "\\n"; a response starting "\\n\\n" merges with it when tokenised jointly.

    SmolLM2 tokenises prompt + "\\n\\nSure..." with a "\\n\\n" token straddling the boundary, so a mask
    at len(prompt tokens) would cut a token in two. Segments tokenised apart keep the boundary exact.
    """
    record = make_record(1, C=2, kind="chat")
    record["responses"] = ["\n\nSure, here is a short answer.", "  No."]
    collator = SAMICollator(tokenizer, layout="plain", shuffle_principles=False)
    prompts = collator.prompts(record)
    assert prompts[0].endswith("<|im_start|>assistant\n")
    for i, response in enumerate(record["responses"]):
        joint = _ids(tokenizer, prompts[i] + response)
        apart = _ids(tokenizer, prompts[i]) + _ids(tokenizer, response)
        assert joint != apart  # the case is real: joint tokenisation merges across the boundary
        assert len(joint) < len(apart)

    batch = collator([record])
    p0 = _ids(tokenizer, prompts[0])  # chat templates carry their own special tokens
    for j, response in enumerate(record["responses"]):
        r_ids = _ids(tokenizer, response)  # chat templates: no separator
        sel = batch["token_cells"] == j  # cell (0, j)
        assert batch["token_labels"][sel].tolist() == r_ids
        assert batch["input_ids"][j, : len(p0) + len(r_ids)].tolist() == p0 + r_ids
        assert batch["attention_mask"][j].sum().item() == len(p0) + len(r_ids)


def test_shared_layout_scores_the_same_tokens(tokenizer):
    records = [make_record(i, C=3, kind="base", principles=["concise", "comprehensive", "polite"]) for i in range(2)]
    plain = SAMICollator(tokenizer, layout="plain", shuffle_principles=False)(records)
    shared = SAMICollator(tokenizer, layout="shared", shuffle_principles=False)(records)
    assert shared["input_ids"].shape[0] == 2 * 3 and plain["input_ids"].shape[0] == 2 * 3 * 3
    for cell in range(2 * 3 * 3):
        assert (
            plain["token_labels"][plain["token_cells"] == cell].tolist()
            == shared["token_labels"][shared["token_cells"] == cell].tolist()
        )


def test_principle_shuffle_is_seeded_per_query_and_epoch(tokenizer):
    names = ["concise", "comprehensive", "polite"]
    records = [make_record(i, C=2, principles=names) for i in range(6)]
    collator = SAMICollator(tokenizer, shuffle_principles=True, seed=3)

    def prompts(epoch, seed=3):
        collator.seed = seed
        return [collator.prompts(r, epoch=epoch) for r in records]

    assert prompts(0) == prompts(0)  # reproducible
    assert prompts(0) != prompts(1)  # a new order each epoch
    assert prompts(0) != prompts(0, seed=4)
    assert prompts(0) != [_generated_prompts(tokenizer, r) for r in records]  # shuffled at all
    for record, texts in zip(records, prompts(1)):  # same stances, another order
        for constitution, text in zip(record["constitutions"], texts):
            for stance in constitution["stances"]:
                assert text.count(stance["text"]) == 1
    collator.training = False  # evaluation: prompts as generated
    assert [collator.prompts(r) for r in records] == [_generated_prompts(tokenizer, r) for r in records]


def test_eos_truncation_and_prompt_limit(tokenizer):
    record = make_record(2, C=2)
    record["finish_reasons"] = ["eos", "length"]
    r_ids = [_ids(tokenizer, " " + r) for r in record["responses"]]
    eos = tokenizer.eos_token_id

    example = SAMICollator(tokenizer, score_eos=True, shuffle_principles=False).encode(record)
    assert example.response_ids[0] == r_ids[0] + [eos]
    assert example.response_ids[1] == r_ids[1]  # cut off by the length limit: no EOS to score

    example = SAMICollator(tokenizer, score_eos=True, max_response_length=5, shuffle_principles=False).encode(record)
    assert example.response_ids == [r_ids[0][:5], r_ids[1][:5]]  # truncated: no EOS either

    with pytest.raises(PromptTooLong, match="max_prompt_length=8"):
        SAMICollator(tokenizer, max_prompt_length=8).encode(record)


def test_batch_errors(tokenizer):
    collator = SAMICollator(tokenizer)
    with pytest.raises(ValueError, match="same C"):
        collator([make_record(0, C=2), make_record(1, C=3)])


def test_dataset_skips_dropped_and_validates(tmp_path):
    import json

    records = [make_record(i) for i in range(3)]
    records[1]["dropped"] = "identical_responses"
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = SAMIDataset(path)
    assert len(dataset) == 2 and dataset.num_dropped == 1
    assert dataset.dropped_reasons == {"identical_responses": 1}
    assert dataset.num_constitutions == [2]

    bad = make_record(0)
    bad["responses"][1] = "  "
    with pytest.raises(ValueError, match="response 1 is empty"):
        SAMIDataset([bad])
    bad = make_record(0)
    bad["responses"] = bad["responses"][:1]
    with pytest.raises(ValueError, match="2 constitutions but 1 responses"):
        SAMIDataset([bad])


def test_chain_of_thought_trains_on_the_whole_continuation():
    record = make_record(0)
    record["template"]["chain_of_thought"] = True
    record["reasoning"] = ["Concise means short.", None]
    assert response_text(record, 0) == f"Concise means short.\nFinal response: {record['responses'][0]}"
    assert response_text(record, 1) == record["responses"][1]
