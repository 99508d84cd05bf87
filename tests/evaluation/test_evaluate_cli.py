"""`sami evaluate` and `sami report` end to end: response files, tiny models, and the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sami.evaluation import read_verdicts
from sami.scripts import evaluate, report


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def response_files(tmp_path, n=6, drop_last=False):
    constitution = "1. The response is brief, at most 50 words in total.\n2. The response contains no commas at all."
    cand, base = [], []
    for i in range(n):
        common = {"query_id": f"q{i}", "query": f"Question {i}?", "constitution": constitution,
                  "principles": ["max_50_words", "no_commas"], "affirmed": [True, True]}
        cand.append({**common, "response": f"GOOD short answer {i}"})
        base.append({**common, "response": f"a long, rambling answer {i} " + "word " * 60})
    if drop_last:
        base.pop()
    return write_jsonl(tmp_path / "sami.jsonl", cand), write_jsonl(tmp_path / "base.jsonl", base)


def test_response_files_with_api_judge(judge_server, api_key, tmp_path, capsys):
    cand, base = response_files(tmp_path)
    out = tmp_path / "eval"
    argv = ["--candidate-responses", str(cand), "--baseline-responses", str(base), "--judge", "api",
            "--judge-model", "fake", "--judge-base-url", judge_server.url, "--judge-api-key-env",
            "SAMI_TEST_JUDGE_KEY", "--both-orders", "--principles", "verifiable", "--out", str(out), "--no-progress"]
    assert evaluate.main(argv) == 0
    verdicts = read_verdicts(out / "verdicts_vs_base.jsonl")
    assert len(verdicts) == 12 and {v.outcome for v in verdicts} == {"win"}
    assert {v.candidate_position for v in verdicts} == {"A", "B"}
    summary = json.loads((out / "summary_vs_base.json").read_text())
    assert summary["raw"]["estimate"] == 1.0 and summary["counts"]["pairs"] == 6
    assert summary["judge_stats"]["requests"] == 12 and summary["pairs"]["shared_pairs"] == 6
    adherence = {(r["principle"], r["affirmed"]): r for r in summary["adherence"]}
    assert adherence[("max_50_words", True)]["trained_rate"] == 1.0
    assert adherence[("no_commas", True)]["base_rate"] == 0.0
    assert (out / "adherence_vs_base.json").exists()
    printed = capsys.readouterr().out
    assert "sami vs base: 6 pairs" in printed and "win 12" in printed
    # a rerun is answered from the cache; the key is in no file
    judge_server.reset()
    assert evaluate.main(argv) == 0
    assert judge_server.count == 0
    for path in out.rglob("*"):
        if path.is_file():
            assert api_key not in path.read_text(), path


def test_mismatched_query_sets_are_a_clear_error(tmp_path, capsys):
    cand, base = response_files(tmp_path, drop_last=True)
    argv = ["--candidate-responses", str(cand), "--baseline-responses", str(base), "--judge", "none",
            "--principles", "verifiable", "--out", str(tmp_path / "eval")]
    assert evaluate.main(argv) == 2
    error = capsys.readouterr().err
    assert "do not answer the same" in error and "only in candidate: 1 ('q5')" in error and "--intersect" in error
    assert evaluate.main(argv + ["--intersect"]) == 0
    summary = json.loads((tmp_path / "eval" / "summary_vs_base.json").read_text())
    assert summary["pairs"]["only_candidate"] == 1 and summary["pairs"]["shared_pairs"] == 5
    assert "raw" not in summary  # no judge: adherence only


def test_usage_errors(tmp_path, capsys):
    assert evaluate.main(["--out", str(tmp_path)]) == 2
    assert "say what to compare" in capsys.readouterr().err
    cand, base = response_files(tmp_path)
    assert evaluate.main(["--candidate-responses", str(cand), "--baseline-responses", str(base), "--judge", "none",
                          "--out", str(tmp_path / "e")]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert evaluate.main(["--candidate-responses", str(cand), "--baseline-responses", str(base),
                          "--judge-api-key-env", "SAMI_SURELY_UNSET_VAR", "--judge-model", "m",
                          "--out", str(tmp_path / "e")]) == 2
    assert "SAMI_SURELY_UNSET_VAR" in capsys.readouterr().err
    assert report.main([str(tmp_path / "missing")]) == 2


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Two tiny random Llama checkpoints with the real SmolLM2 tokenizer (and chat template)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sami.models.loading import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    folder = tmp_path_factory.mktemp("tiny")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        path = folder / f"model{seed}" / "checkpoint"
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    return paths


def test_two_models_then_run_layout_and_report(tiny_checkpoints, tmp_path):
    """Generate with two tiny models, judge with a tiny local judge, then report the run directory."""
    model_a, model_b = tiny_checkpoints
    run = tmp_path / "run"
    out = run / "iter_1"
    argv = ["--candidate", str(model_a), "--candidate-name", "sami-iter1", "--baseline", str(model_b),
            "--baseline-name", "base", "--queries", "dialogue", "--split", "eval", "--limit", "3",
            "--principles", "verifiable", "--max-new-tokens", "6", "--judge", "local", "--judge-model",
            str(model_a), "--margin", "0", "--max-unparsed-fraction", "1", "--out", str(out), "--no-progress",
            "--device", "cpu"]
    assert evaluate.main(argv) == 0
    responses = [json.loads(line) for line in (out / "responses_sami-iter1.jsonl").read_text().splitlines()]
    assert len(responses) == 3 and all(r["response_tokens"] <= 6 for r in responses)
    assert responses[0]["principles"] == ["max_50_words", "bulleted_list", "ends_with_question", "all_lowercase",
                                          "no_commas"]
    verdicts = read_verdicts(out / "verdicts_vs_base.jsonl")
    assert len(verdicts) == 3 and all(v.split == "train" for v in verdicts)
    mtime = (out / "responses_base.jsonl").stat().st_mtime_ns
    assert evaluate.main(argv) == 0  # the rerun reuses the responses
    assert (out / "responses_base.jsonl").stat().st_mtime_ns == mtime
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi_bound": 0.01, "response_length": 6}\n'
                                       '{"iteration": 1, "mi_bound": 0.02, "response_length": 6}\n')
    assert report.main([str(run)]) == 0
    text = (run / "report" / "report.md").read_text()
    assert "| 1 | sami-iter1 | base | 3 |" in text and "## Verifiable principles" in text


@pytest.mark.slow
def test_embedded_model_end_to_end(tmp_path, one_torch_thread):
    """`sami evaluate` + `sami report` on the embedded smollm2: generation, local judge, adherence, figures."""
    run = tmp_path / "run"
    argv = ["--candidate", "smollm2-135m", "--candidate-name", "sami-iter1", "--baseline", "smollm2-135m",
            "--baseline-name", "base", "--prompt-kind", "base", "--queries", "dialogue", "--split", "eval",
            "--limit", "3", "--principles", "verifiable", "--max-new-tokens", "24", "--judge", "local",
            "--judge-model", "smollm2-135m", "--allow-unparsed", "--out", str(run / "iter_1"), "--no-progress",
            "--device", "cpu"]
    assert evaluate.main(argv) == 0
    summary = json.loads((run / "iter_1" / "summary_vs_base.json").read_text())
    assert summary["counts"]["pairs"] == 3 and summary["adherence"]
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi_bound": 0.1, "response_length": 20}\n'
                                       '{"iteration": 1, "mi_bound": 0.2, "response_length": 21}\n')
    assert report.main([str(run)]) == 0
    assert (run / "report" / "win_rates.png").exists()


def test_run_mode_evaluates_every_iteration(tiny_checkpoints, tmp_path):
    import shutil

    model_a, model_b = tiny_checkpoints
    run = tmp_path / "run"
    for t in (1, 2):
        shutil.copytree(model_a, run / f"iter_{t}" / "checkpoint")
    shutil_copy_principles(run)
    argv = ["--run", str(run), "--baseline", str(model_b), "--second-baseline", str(model_b),
            "--second-baseline-name", "instruct", "--queries", "dialogue", "--limit", "2", "--max-new-tokens", "4",
            "--judge", "none", "--no-progress", "--device", "cpu"]
    assert evaluate.main(argv) == 0
    for t in (1, 2):
        for baseline in ("base", "instruct"):
            adherence = json.loads((run / f"iter_{t}" / f"adherence_vs_{baseline}.json").read_text())
            assert adherence["trained_name"] == f"sami-iter{t}" and adherence["base_name"] == baseline
    assert (run / "eval" / "responses_base.jsonl").exists() and (run / "iter_2" / "responses_eval.jsonl").exists()
    assert report.main([str(run)]) == 0
    assert "## Verifiable principles" in (run / "report" / "report.md").read_text()


def test_run_mode_reuses_the_runs_held_out_generations(judge_server, api_key, tmp_path):
    """`sami run` leaves iter_<t>/eval_generations.jsonl (iter_0 = base): judged as they are, nothing generated."""
    run = tmp_path / "run"

    def record(query_id, responses):
        stances = [[{"name": "max_50_words", "affirmed": True, "text": "Brief."}],
                   [{"name": "max_50_words", "affirmed": False, "text": "Long."}]]
        return {"query_id": query_id, "query": f"Tell me about {query_id}.", "task": "dialogue",
                "constitutions": [{"stances": s, "text": f"1. {s[0]['text']}"} for s in stances],
                "responses": responses, "response_tokens": [len(r.split()) for r in responses], "dropped": None}

    for t, responses in ((0, ["word " * 60, "word " * 70]), (1, ["GOOD short.", "word " * 80])):
        (run / f"iter_{t}").mkdir(parents=True)
        write_jsonl(run / f"iter_{t}" / "eval_generations.jsonl", [record(f"q{i}", responses) for i in range(4)])
    (run / "config.yaml").write_text("model: smollm2-135m\nnum_constitutions: 2\n")
    shutil_copy_principles(run)
    argv = ["--run", str(run), "--constitutions", "all", "--judge", "api", "--judge-model", "fake",
            "--judge-base-url", judge_server.url, "--judge-api-key-env", "SAMI_TEST_JUDGE_KEY", "--no-progress"]
    assert evaluate.main(argv) == 0
    verdicts = read_verdicts(run / "iter_1" / "verdicts_vs_base.jsonl")
    assert len(verdicts) == 8 and {v.pair_id for v in verdicts} >= {"q0", "q0#1"}
    assert sum(v.outcome == "win" for v in verdicts) == 4  # the GOOD responses; the rest are ties
    adherence = {(r["principle"], r["affirmed"]): r for r in
                 json.loads((run / "iter_1" / "adherence_vs_base.json").read_text())["rows"]}
    assert adherence[("max_50_words", True)]["base_rate"] == 0.0
    assert adherence[("max_50_words", True)]["trained_rate"] == 1.0
    assert adherence[("max_50_words", False)]["trained_rate"] == 1.0
    assert not (run / "eval" / "responses_base.jsonl").exists()
    assert report.main([str(run)]) == 0


def shutil_copy_principles(run):
    import shutil

    shutil.copy(Path(__file__).parents[2] / "sami" / "principles" / "builtin" / "verifiable.yaml",
                run / "principles.yaml")
