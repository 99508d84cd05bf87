"""SAMITrainer and the Hub: save_model writes merged weights or the adapter with the SAMI model card, and
push_to_hub uploads exactly that folder. The Hub is a local folder: a stand-in HfApi copies uploads into it
(no local Hub server exists), and what was "pushed" is loaded back with from_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import LocalHub, make_records

from sami.training import SAMIConfig, SAMITrainer, evaluate_sami
from sami.training.trainer import train_sami

PROMPT = "Summarise the post below. POST: my cat hides. Summary:"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub

    api = type("Hub", (LocalHub,), {"root": tmp_path / "hub", "calls": []})
    monkeypatch.setattr(huggingface_hub, "HfApi", api)
    return api


@pytest.fixture
def base_dir(tmp_path, tokenizer, model_factory):
    path = tmp_path / "base"
    model_factory(seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _config(tmp_path, **overrides) -> SAMIConfig:
    settings = {"output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 2, "max_steps": 2,
                "learning_rate": 5e-2, "disable_tqdm": True, "dataloader_pin_memory": False, "seed": 0}
    return SAMIConfig(**{**settings, **overrides})


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([tokenizer(PROMPT)["input_ids"]])).logits


def _card(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def test_lora_merged_is_saved_with_its_card_and_pushed(tmp_path, tokenizer, base_dir, hub):
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, push_to_hub=True,
                     hub_model_id="me/sami-merged", hub_private_repo=True)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    trainer = SAMITrainer(model, config, train_dataset=make_records(4), processing_class=tokenizer)
    assert hub.calls == [("create_repo", "me/sami-merged", True)]  # the Trainer's repo, through sami.hub
    trainer.train()
    out = tmp_path / "checkpoint"  # not args.output_dir: the push must upload what was saved
    trainer.save_model(str(out))
    assert hub.calls[1:] == [("upload_folder", "me/sami-merged", str(out))]

    pushed = hub.root / "me" / "sami-merged"
    assert (pushed / "adapter" / "adapter_config.json").exists() and not (pushed / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(pushed)  # a plain checkpoint, no peft
    torch.testing.assert_close(_logits(merged, tokenizer), _logits(trainer.model, tokenizer), atol=1e-5, rtol=1e-5)

    card = _card(pushed)
    assert (pushed / "README.md").read_text() == (out / "README.md").read_text()
    assert {"sami", "generated_from_trainer", "lora"} <= set(card.data.tags)
    assert card.data.library_name == "transformers" and card.data.base_model is None  # a local base folder
    assert "merged into the base weights" in card.text and str(base_dir) in card.text
    assert "huggingface.co/papers/2404.14313" in card.text and "@inproceedings{franken2024sami" in card.text
    # the principles, read back from the training records' constitutions
    assert "| concise | The summary is concise. | The summary is long and rambling. |" in card.text
    assert "2 constitutions per query" in card.text
    assert "## Training log" in card.text and "| 2 |" in card.text  # step 2 of the log
    assert "learning_rate: 0.05" in card.text and "hub_token" not in card.text


def test_lora_adapter_is_saved_and_pushed_as_an_adapter(tmp_path, tokenizer, base_dir, hub):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, merge_lora_on_save=False)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    trainer = SAMITrainer(model, config, train_dataset=make_records(4), processing_class=tokenizer)
    trainer.train()
    trainer.save_model()  # args.output_dir; push_to_hub is off: nothing uploaded yet
    assert hub.calls == []
    trainer.push_to_hub(commit_message="adapter")
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"] and hub.calls[0][1] == "me/out"

    pushed = hub.root / "me" / "out"
    assert (pushed / "adapter_config.json").exists() and not (pushed / "config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, pushed)
    torch.testing.assert_close(_logits(adapted, tokenizer), _logits(trainer.model, tokenizer), atol=1e-5, rtol=1e-5)
    card = _card(pushed)
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert "AutoPeftModelForCausalLM" in card.text and "not merged" in card.text


def test_train_sami_pushes_a_full_fine_tune_with_the_command(tmp_path, tokenizer, base_dir, hub):
    from transformers import AutoModelForCausalLM

    config = _config(tmp_path, push_to_hub=True, hub_model_id="me/sami-full", learning_rate=1e-2)
    command = f"sami train --model {base_dir} --generations g.jsonl --push_to_hub true"
    out = train_sami(str(base_dir), make_records(4), config, command=command)
    pushed = hub.root / "me" / "sami-full"
    assert (pushed / "trainer_state.json").exists()  # written before the push
    reloaded = AutoModelForCausalLM.from_pretrained(pushed)
    torch.testing.assert_close(_logits(reloaded, tokenizer), _logits(AutoModelForCausalLM.from_pretrained(out),
                                                                      tokenizer))
    card = _card(pushed)
    assert "lora" not in card.data.tags and "All weights were fine-tuned" in card.text
    assert f"```bash\n{command}\n```" in card.text and f"model: {base_dir}" in card.text

    calls = list(hub.calls)
    evaluate_sami(str(pushed), make_records(2), config)  # a scoring trainer: no repo, no upload
    assert hub.calls == calls


def test_hub_failures_say_how_to_log_in(tmp_path, tokenizer, base_dir, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalTokenNotFoundError

    from sami.hub import HubError

    class NoToken(LocalHub):
        def create_repo(self, *args, **kwargs):
            raise LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")

    monkeypatch.setattr(huggingface_hub, "HfApi", NoToken)
    with pytest.raises(HubError, match="hf auth login"):
        SAMITrainer(str(base_dir), _config(tmp_path, push_to_hub=True), train_dataset=make_records(2))
