import pytest

from sami.generation.prompts import ANSWER_MARKER, PromptTemplate, encode_segments, resolve_template, split_reasoning


def test_base_templates_follow_the_paper(smol_tokenizer):
    dialogue = PromptTemplate("dialogue", "base").render(smol_tokenizer, "1. Be kind.", "Hi?")
    assert dialogue.startswith("System: ") and "1. Be kind." in dialogue and dialogue.endswith("Human: Hi?\n\nAssistant:")
    summary = PromptTemplate("summarisation", "base").render(smol_tokenizer, "1. Be short.", "my post")
    assert summary.endswith("POST: my post\n\nSummary:")


def test_chat_template_puts_the_constitution_in_the_system_turn(smol_tokenizer):
    template = resolve_template(smol_tokenizer, "dialogue")
    assert template.kind == "chat"
    prompt = template.render(smol_tokenizer, "1. Be kind.", "Hi?")
    assert prompt.index("1. Be kind.") < prompt.index("Hi?")
    assert prompt.endswith("<|im_start|>assistant\n")


def test_segments_never_merge_across_the_boundary(smol_tokenizer):
    """'Summary:' + ' The' tokenised jointly and separately must give the same ids here, but a prompt
    ending mid-word shows the difference: the joint tokenisation merges across the boundary."""
    template = PromptTemplate("summarisation", "base")
    prompt, response = "POST: x\n\nSummary:", "The post"
    prompt_ids, response_ids = encode_segments(smol_tokenizer, template, prompt, response)
    assert smol_tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=True) == prompt + " " + response
    # a boundary inside a word: joint tokenisation would shift the mask, segment tokenisation cannot
    chat = PromptTemplate("dialogue", "chat")
    p_ids, r_ids = encode_segments(smol_tokenizer, chat, "Hello wor", "ld and more")
    joint = smol_tokenizer("Hello wor" + "ld and more", add_special_tokens=False)["input_ids"]
    assert joint[: len(p_ids)] != p_ids or len(joint) != len(p_ids) + len(r_ids)
    assert smol_tokenizer.decode(r_ids) == "ld and more"


def test_chain_of_thought_instruction_and_split():
    template = PromptTemplate("dialogue", "base", chain_of_thought=True)
    assert ANSWER_MARKER in template.instruction()
    assert split_reasoning(f"Think a bit.\n{ANSWER_MARKER} The answer.") == ("Think a bit.", "The answer.")
    assert split_reasoning("no marker here") == (None, "no marker here")


def test_unknown_task_or_kind():
    with pytest.raises(ValueError, match="unknown task"):
        PromptTemplate("poetry", "base")
    with pytest.raises(ValueError, match="unknown prompt kind"):
        PromptTemplate("dialogue", "instruct")
