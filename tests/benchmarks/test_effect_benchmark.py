"""benchmarks/effect.py end to end on a tiny random model: the run, held-out principles, the guards, the outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "effect.py"
_spec = importlib.util.spec_from_file_location("effect_benchmark", SCRIPT)
effect = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = effect  # dataclasses look up their module
_spec.loader.exec_module(effect)


def tiny_recipe(path: Path, model_dir: Path) -> Path:
    recipe = {
        "model": str(model_dir), "principles": "verifiable", "queries": "dialogue", "task": "dialogue",
        "max_train_queries": 8, "max_eval_queries": 4, "scheme": "diverse", "principles_per_constitution": 1,
        "max_new_tokens": 6, "temperature": 1.0, "generation_dtype": "float32", "drop_identical": False,
        "drop_truncated": "none", "iterations": 1, "initial_steps": 1, "per_device_train_batch_size": 2,
        "learning_rate": 1e-3, "use_cpu": True, "seed": 0,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_effect_benchmark_scores_every_iteration(tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    effect.main(["--config", str(tiny_recipe(tmp_path / "recipe.yaml", tiny_model_dir)), "--output_dir", str(run_dir)])
    out = capsys.readouterr().out
    assert "| iteration | MI bound rows / cols (nats) | affirmed |" in out and "| 1 |" in out
    report = json.loads((run_dir / "report" / "effect.json").read_text())
    scores = report["scores"]
    assert [s["iteration"] for s in scores] == [0, 1]
    assert scores[0]["affirmed"]["difference"] == 0.0  # the base model against itself
    assert scores[1]["affirmed"]["n"] == scores[0]["affirmed"]["n"] > 0
    assert scores[1]["heldout_affirmed"]["n"] > 0  # the eval-split principles were generated and scored
    assert all(s["base_nll"] > 0 and 0 <= s["repetition"] <= 1 for s in scores)
    assert scores[0]["trained_on_nll"] is None and scores[1]["trained_on_nll"] > 0  # the base model's own samples
    assert (run_dir / "iter_1" / "responses_heldout-principles.jsonl").exists()
    assert (run_dir / "report" / "effect.png").stat().st_size > 10_000
    assert {row["principle"] for row in report["principles"]} >= {"min_120_words"}  # held-out rows too
    assert "| iteration | principle | trained on: toward / away" in out
    train = {"max_50_words", "bulleted_list", "ends_with_question", "all_lowercase", "no_commas"}
    assert scores[0]["signal"] and all(row["trained_on"] is None for row in scores[0]["signal"])  # base: no data
    rows = scores[1]["signal"]  # training principles, each scored on its own held-out queries
    assert rows and all(r["principle"] in train and r["held_out"]["pairs"] > 0 and r["mi_bound_rows"] <= 0.6932
                        for r in rows)
    trained_on = sum(r["trained_on"]["pairs"] for r in rows if r["trained_on"])  # the 2 queries iteration 1 trained on
    assert 0 < trained_on <= 2


def test_format_sweep_has_a_row_per_variant():
    rates = effect.PairedRates(10, 0.2, 0.5, 0.3, 0.1, 0.5, 0.01)
    scores = [effect.Scores(t, 0.01 * t, 0.02 * t, rates, rates, None, None, 50.0, 0.1, 2.5,
                            trained_on_nll=3.25 if t else None) for t in (0, 1)]
    table = effect.format_sweep([("reference (the recipe)", scores), ("learning_rate=3e-4", scores)])
    assert table.splitlines()[2].startswith("| reference (the recipe) | 0.000 → 0.010 | 50% (+30 [+10, +50], p=0.01)")
    assert table.splitlines()[2].endswith("| 2.50 → 2.50 | 3.25 | no iteration |")  # p = 0.01 is not < 0.01
    assert table.splitlines()[3].startswith("| learning_rate=3e-4 |")


def test_target_names_the_parts_an_iteration_misses():
    def rates(difference: float, p_value: float):
        return effect.PairedRates(40, 0.3, 0.3 + difference, difference, difference - 0.1, difference + 0.1, p_value)

    def iteration(t, mi, affirmed, antithesis, nll, repetition):
        return effect.Scores(t, mi, mi, affirmed, antithesis, None, None, 90.0, repetition, nll)

    base = iteration(0, -0.01, rates(0, 1), rates(0, 1), 0.65, 0.20)
    met = iteration(1, 0.00, rates(0.32, 0.004), rates(0, 1), 0.64, 0.218)  # the recipe's seed 0, iteration 1
    missed = iteration(2, -0.02, rates(0.45, 0.02), rates(-0.05, 0.5), 0.72, 0.23)
    scores = [base, met, missed]
    target = effect.Target()
    assert target.misses(scores, 1) == [] and target.verdict(scores, 1) == "met"
    assert target.misses(scores, 2) == ["affirmed", "antithesis", "MI bound", "NLL", "repetition"]
    assert target.verdict(scores, 0) == "–"
    assert effect.format_scores(scores).splitlines()[3].endswith("| met |")
    # lists under "affirmed" 62%, under "negated" 100% - 30% = 70%: the stance steers the behaviour by -8 points
    assert round(100 * met.connection) == -8 and "| -8 |" in effect.format_scores(scores).splitlines()[3]


def test_connection_is_how_much_the_stance_steers_the_behaviour():
    from sami.evaluation.verifiable import AdherenceRow

    rows = [AdherenceRow("max_50_words", True, 10, 0.5, 10, 0.9, 0.4, 0.01, "mcnemar"),
            AdherenceRow("max_50_words", False, 10, 0.75, 10, 0.7, -0.05, 1.0, "mcnemar")]
    table = effect.format_connections(rows)
    assert table.splitlines()[2] == "| max_50_words | 50% | 25% | +25 | +60 |"


def test_the_benchmark_wording_variant_changes_one_antithesis_only():
    from sami.principles import load_principles

    builtin = load_principles("verifiable_paragraphs")
    variant = load_principles(str(SCRIPT.parent / "principles" / "bullets_vs_sentences.yaml"))
    changed = [(a.name, b.antithesis) for a, b in zip(builtin.principles, variant.principles) if a != b]
    assert changed == [("bulleted_list", "The response is written as one or two paragraphs of complete sentences.")]
