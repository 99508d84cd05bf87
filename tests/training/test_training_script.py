"""`sami train`: YAML config + flag overrides -> a trained, plain HF checkpoint."""

from __future__ import annotations

import json

import torch
from helpers import make_records

from sami.cli import main as sami
from sami.jsonl import write_jsonl
from sami.scripts.train import main, make_parser, parse_args


def test_sami_train_with_yaml_and_override(tmp_path, tokenizer, model_factory):
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    model_factory().save_pretrained(base)
    tokenizer.save_pretrained(base)
    generations = write_jsonl(make_records(4), tmp_path / "generations.jsonl")
    out = tmp_path / "checkpoint"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {base}\ngenerations: {generations}\noutput_dir: {out}\nmax_steps: 2\n"
        "per_device_train_batch_size: 2\nlearning_rate: 1.0e-3\naggregation: sum\ndisable_tqdm: true\n"
        "dataloader_pin_memory: false\n"
    )
    args = ["--config", str(config), "--learning_rate", "0.02"]
    code = main([*args, "--resume_from_checkpoint", "last"])  # nothing to resume yet: starts afresh
    assert code == 0
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h for h in state["log_history"] if "loss" in h]
    assert len(steps) == 2
    assert steps[0]["learning_rate"] == 0.02  # the flag beat the YAML
    assert "mi/bound" in steps[0]
    model = AutoModelForCausalLM.from_pretrained(out)
    before = AutoModelForCausalLM.from_pretrained(base)
    assert not torch.equal(model.lm_head.weight, before.lm_head.weight)


def test_parse_errors_name_the_fix(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 1.0e-6\n")
    assert sami(["train", "--config", str(config), "--generations", "x.jsonl", "--output_dir", str(tmp_path)]) == 2
    assert "learning_rat" in capsys.readouterr().err
    assert sami(["train", "--generations", "x.jsonl"]) == 2
    assert "--output_dir" in capsys.readouterr().err
    assert sami(["train", "--output_dir", str(tmp_path)]) == 2
    assert "--generations" in capsys.readouterr().err
    assert sami(["train", "--generations", "x.jsonl", "--output_dir", str(tmp_path), "--loss_temperature", "0"]) == 2
    assert "loss_temperature" in capsys.readouterr().err

    model_args, data_args, args = parse_args(make_parser(), ["--generations", "g.jsonl", "--output_dir", str(tmp_path)])
    assert (model_args.model, args.learning_rate, args.aggregation) == ("smollm2-135m", 5e-7, "mean")
    assert data_args.generations == "g.jsonl" and data_args.eval_generations is None
