"""sami/hub.py on a run folder: the model card rendered from it, the final model pushed with that card, and
generations and verdicts as Hub datasets. The Hub is a local folder: datasets go through save_to_disk /
load_from_disk, and only the calls that need the real Hub (HfApi, push_to_hub) are replaced by stand-ins."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import LocalHub, make_records

from sami.hub import (
    HubError,
    card_from_run,
    generations_dataset,
    invocation,
    push_generations,
    push_run_model,
    push_verdicts,
    render_model_card,
    run_generations,
    verdicts_dataset,
    weights_of,
)
from sami.jsonl import write_jsonl
from sami.records import read_generations, read_verdicts
from sami.run_folder import EvaluationFolder, RunFolder
from sami.tracking import judgement_values

CONFIG = {"model": "HuggingFaceTB/SmolLM2-135M", "queries": "dialogue", "task": "dialogue", "scheme": "fixed_pair",
          "num_constitutions": 2, "iterations": 3, "initial_steps": 2, "learning_rate": 1e-6, "seed": 0}


@pytest.fixture
def run(run_dir, tiny_model_dir) -> Path:
    """The reporting fixture's run, completed as `sami run` leaves it: config, generations, a final checkpoint."""
    (run_dir / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    folder = RunFolder(run_dir)
    for t in range(4):
        iteration = folder.iteration(t)
        iteration.path.mkdir(exist_ok=True)
        write_jsonl(make_records(3, principles=["concise", "polite"]), iteration.eval_generations)
        if t:
            records = make_records(4)
            records[1]["dropped"] = "identical"
            write_jsonl(records, iteration.generations)
    shutil.copytree(tiny_model_dir, folder.iteration(3).checkpoint)
    return run_dir


@pytest.fixture
def dataset_hub(tmp_path, monkeypatch):
    """``DatasetDict.push_to_hub`` writes each config to ``hub/<repo>/<config>`` with ``save_to_disk``."""
    from datasets import DatasetDict

    pushed = []

    def push_to_hub(self, repo_id, config_name="default", private=None, token=None, **kwargs):
        pushed.append((repo_id, config_name, private))
        self.save_to_disk(str(tmp_path / "hub" / repo_id / config_name))

    monkeypatch.setattr(DatasetDict, "push_to_hub", push_to_hub)
    return SimpleNamespace(root=tmp_path / "hub", pushed=pushed)


def test_card_from_a_run(run):
    from huggingface_hub import ModelCard

    info = card_from_run(run, command="sami run --config demo_cpu --push_to_hub true")
    card = ModelCard(render_model_card(info))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M" and card.data.library_name == "transformers"
    assert {"sami", "generated_from_trainer"} <= set(card.data.tags) and "lora" not in card.data.tags
    text = card.text
    assert "[HuggingFaceTB/SmolLM2-135M](https://huggingface.co/HuggingFaceTB/SmolLM2-135M)" in text
    assert "| helpful | The assistant is helpful. | The assistant is unhelpful. | train |" in text
    assert "| harmless | The assistant is harmless. | The assistant is harmful. | held out |" in text
    assert "constitution scheme `fixed_pair`, 2 constitutions per query" in text
    for t, bound in [("base", "0.1200"), ("1", "0.2500"), ("2", "0.3800"), ("3", "0.4600")]:
        assert f"| {t} | {bound} |" in text  # metrics.jsonl, one row per iteration
    summary = json.loads((run / "iter_2" / "summary_vs_instruct.json").read_text())
    raw = f"{summary['raw']['estimate']:.3f}"
    assert f"| 2 | instruct | api:fake | {raw} |" in text
    assert "```bash\nsami run --config demo_cpu --push_to_hub true\n```" in text
    assert "scheme: fixed_pair" in text  # the run's config.yaml
    assert "@inproceedings{franken2024sami" in text and "2404.14313" in text

    early = card_from_run(run, 3)
    assert [m["iteration"] for m in early.iterations] == [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError, match="iter_1/checkpoint"):
        card_from_run(run, 1)


def test_push_run_model_uploads_the_checkpoint_with_its_card(run, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    hub = type("Hub", (LocalHub,), {"root": tmp_path / "hub", "calls": []})
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    repo = push_run_model(run, "me/demo-sami", private=True, command="sami run", datasets=["me/demo-generations"])
    checkpoint = run / "iter_3" / "checkpoint"
    assert repo == "me/demo-sami"
    assert hub.calls == [("create_repo", "me/demo-sami", True), ("upload_folder", "me/demo-sami", str(checkpoint))]
    pushed = hub.root / "me" / "demo-sami"
    AutoModelForCausalLM.from_pretrained(pushed)  # loads from the stand-in Hub
    card = ModelCard.load(pushed / "README.md")
    assert card.data.datasets == ["me/demo-generations"] and "sami" in card.data.tags
    assert 'pipeline("text-generation", model="me/demo-sami")' in card.text

    push_run_model(run)  # the repo defaults to the run folder's name
    assert hub.calls[-2][1] == f"me/{run.name}"


def test_generations_go_up_one_config_per_iteration(run, dataset_hub):
    from datasets import load_from_disk

    configs = run_generations(run)
    assert {name: sorted(splits) for name, splits in configs.items()} == {
        "iter_0": ["eval"], "iter_1": ["eval", "train"], "iter_2": ["eval", "train"], "iter_3": ["eval", "train"]}
    url = push_generations(run, "me/demo-generations", private=True)
    assert url == "https://huggingface.co/datasets/me/demo-generations"
    assert dataset_hub.pushed == [("me/demo-generations", f"iter_{t}", True) for t in range(4)]

    loaded = load_from_disk(str(dataset_hub.root / "me" / "demo-generations" / "iter_2"))
    expected = [r.to_dict() for r in read_generations(run / "iter_2" / "generations.jsonl")]
    rows = list(loaded["train"])
    assert [r["query_id"] for r in rows] == [r["query_id"] for r in expected]
    assert rows[1]["dropped"] == "identical"  # kept, with its reason: filter on it
    assert rows[0]["responses"] == expected[0]["responses"] and rows[0]["constitutions"] == expected[0]["constitutions"]
    assert json.loads(rows[0]["provenance"]) == expected[0]["provenance"]


def test_one_generations_file_goes_up_as_one_split(run, tmp_path, dataset_hub):
    from datasets import load_from_disk

    path = run / "iter_1" / "eval_generations.jsonl"
    push_generations(path, "me/heldout", split="eval")
    assert dataset_hub.pushed == [("me/heldout", "default", None)]
    loaded = load_from_disk(str(dataset_hub.root / "me" / "heldout" / "default"))
    assert list(loaded) == ["eval"] and loaded["eval"].num_rows == 3
    assert generations_dataset(path)["query"] == loaded["eval"]["query"]

    empty = write_jsonl([], tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="no generation records"):
        generations_dataset(empty)


def test_verdicts_go_up_as_one_table(run, tmp_path, dataset_hub):
    from datasets import load_from_disk

    push_verdicts(run, "me/demo-verdicts")
    table = load_from_disk(str(dataset_hub.root / "me" / "demo-verdicts" / "default"))["train"]
    assert table.num_rows == 3 * 2 * 40  # iterations x baselines x verdicts
    assert sorted(set(zip(table["iteration"], table["baseline"]))) == [
        (t, b) for t in (1, 2, 3) for b in ("base", "instruct")]
    first = read_verdicts(run / "iter_1" / "verdicts_vs_base.jsonl")[0].to_dict()
    row = next(r for r in table if r["iteration"] == 1 and r["baseline"] == "base")
    assert {k: row[k] for k in ("pair_id", "outcome", "score", "principles")} == {
        k: first[k] for k in ("pair_id", "outcome", "score", "principles")}

    outside = tmp_path / "eval_out"  # `sami evaluate --output_dir`: no iterations
    outside.mkdir()
    shutil.copy(run / "iter_2" / "verdicts_vs_base.jsonl", outside)
    table = verdicts_dataset([EvaluationFolder(outside)])
    assert table.num_rows == 40 and set(table["iteration"]) == {None}
    push_verdicts(outside, "me/eval-verdicts")
    assert dataset_hub.pushed[-1] == ("me/eval-verdicts", "default", None)


def test_dataset_push_failures_say_how_to_log_in(run, monkeypatch):
    from datasets import DatasetDict
    from huggingface_hub.errors import OfflineModeIsEnabled

    def offline(self, *args, **kwargs):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    monkeypatch.setattr(DatasetDict, "push_to_hub", offline)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        push_verdicts(run, "me/demo-verdicts")


def test_tracker_values_of_a_judged_iteration(run_dir):
    values = judgement_values(RunFolder(run_dir).iteration(2))
    summary = json.loads((run_dir / "iter_2" / "summary_vs_base.json").read_text())
    assert values["win_rate/base/raw"] == pytest.approx(summary["raw"]["estimate"])
    assert {"win_rate/instruct/balanced", "win_rate/instruct/lc"} <= set(values)
    rows = json.loads((run_dir / "iter_2" / "adherence_vs_base.json").read_text())["rows"]
    row = next(r for r in rows if r["principle"] == "max_50_words" and r["affirmed"])
    assert values["adherence/max_50_words/affirmed"] == pytest.approx(row["trained_rate"])
    assert judgement_values(RunFolder(run_dir).iteration(0)) == {}


def test_the_command_line_hides_tokens():
    argv = ["--config", "demo cpu", "--hub_token", "hf_secret", "--hub_token=hf_other", "--push_to_hub", "true"]
    assert invocation("run", argv) == (
        "sami run --config 'demo cpu' --hub_token '***' '--hub_token=***' --push_to_hub true")


def test_what_a_model_folder_holds(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert weights_of(tmp_path) == "full"
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert weights_of(tmp_path) == "merged"
    assert weights_of(tmp_path / "adapter") == "adapter"


# ---------------------------------------------------------------------------------- the commands


def test_sami_generate_pushes_its_generations(tiny_model_dir, tmp_path, dataset_hub, capsys):
    from datasets import load_from_disk

    from sami.cli import main as sami

    output = tmp_path / "gens.jsonl"
    argv = ["generate", "--principles", "hh", "--queries", "dialogue", "--model", str(tiny_model_dir),
            "--max_eval_queries", "2", "--split", "eval", "--max_new_tokens", "3", "--generation_backend", "hf",
            "--device", "cpu", "--output", str(output), "--push_generations_to_hub", "me/gens",
            "--private_dataset", "true"]
    assert sami(argv) == 0, capsys.readouterr().err
    assert "https://huggingface.co/datasets/me/gens" in capsys.readouterr().out
    assert dataset_hub.pushed == [("me/gens", "default", True)]
    pushed = load_from_disk(str(dataset_hub.root / "me" / "gens" / "default"))
    assert list(pushed) == ["eval"]  # the --split generated
    records = read_generations(output)
    assert len(records) == 2 and pushed["eval"]["query_id"] == [r.query_id for r in records]
    assert pushed["eval"]["responses"] == [r.responses for r in records]


def test_sami_evaluate_pushes_its_verdicts(run, tiny_model_dir, dataset_hub, capsys):
    from datasets import load_from_disk

    from sami.cli import main as sami

    argv = ["evaluate", "--run_dir", str(run), "--judge", "local", "--judge_model", str(tiny_model_dir),
            "--judge_model_kwargs", '{"dtype": "float32", "attn_implementation": "eager"}', "--margin", "0",
            "--max_unparsed_fraction", "1", "--device", "cpu", "--no_progress", "--push_verdicts_to_hub",
            "me/verdicts"]
    assert sami(argv) == 0, capsys.readouterr().err
    assert "verdicts pushed to https://huggingface.co/datasets/me/verdicts" in capsys.readouterr().out
    assert dataset_hub.pushed == [("me/verdicts", "default", None)]
    table = load_from_disk(str(dataset_hub.root / "me" / "verdicts" / "default"))["train"]
    judged = [row for row in table if row["baseline"] == "base"]  # this evaluation: 3 held-out pairs per iteration
    assert sorted(row["iteration"] for row in judged) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert {row["judge"] for row in judged} == {f"local:{tiny_model_dir}"}
    summary = json.loads((run / "iter_1" / "summary_vs_base.json").read_text())
    assert summary["settings"]["judge_model_kwargs"] == '{"dtype": "float32", "attn_implementation": "eager"}'


def test_sami_train_pushes_the_model_with_its_card(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    from sami.cli import main as sami

    hub = type("Hub", (LocalHub,), {"root": tmp_path / "hub", "calls": []})
    monkeypatch.setattr(huggingface_hub, "HfApi", hub)
    generations = tmp_path / "gens"  # a datasets folder, as a pushed dataset comes back
    generations_dataset(write_jsonl(make_records(4), tmp_path / "gens.jsonl")).save_to_disk(str(generations))
    out = tmp_path / "out"
    argv = ["train", "--generations", str(generations), "--model", str(tiny_model_dir), "--output_dir", str(out),
            "--max_steps", "1", "--per_device_train_batch_size", "2", "--disable_tqdm", "true",
            "--dataloader_pin_memory", "false", "--report_to", "none", "--push_to_hub", "true", "--hub_model_id",
            "me/m", "--hub_token", "hf_secret"]
    assert sami(argv) == 0, capsys.readouterr().err
    assert hub.calls == [("create_repo", "me/m", None), ("upload_folder", "me/m", str(out))]
    pushed = hub.root / "me" / "m"
    AutoModelForCausalLM.from_pretrained(pushed)
    card = ModelCard.load(pushed / "README.md")
    assert {"sami", "generated_from_trainer"} <= set(card.data.tags)
    assert f"sami train --generations {generations} --model {tiny_model_dir}" in card.text
    assert "--hub_token '***'" in card.text and "hf_secret" not in card.text
    assert f"a fine-tuned version of `{tiny_model_dir}`" in card.text
    assert "| concise | The summary is concise. |" in card.text  # the principles of the training records
