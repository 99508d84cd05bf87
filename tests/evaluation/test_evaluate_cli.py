"""`sami evaluate` and `sami report` end to end: response files, tiny models, runs, and the embedded model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sami import cli
from sami.config.evaluation import parse_evaluation_args
from sami.errors import ConfigError, SamiError
from sami.evaluation import read_verdicts
from sami.records import read_generations, read_responses
from sami.scripts import evaluate, report

VERIFIABLE = Path(__file__).parents[2] / "sami" / "principles" / "builtin" / "verifiable.yaml"


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
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


def make_run(root: Path, config: str) -> Path:
    """A run folder with `config` as its config.yaml and the verifiable principles as its principles."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(config)
    shutil.copy(VERIFIABLE, root / "principles.yaml")
    return root


def write_metrics(run: Path) -> None:
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi/bound": 0.01, "response_length": 6}\n'
                                       '{"iteration": 1, "mi/bound": 0.02, "response_length": 6}\n')


def test_response_files_with_api_judge(judge_server, api_key, tmp_path, capsys):
    cand, base = response_files(tmp_path)
    out = tmp_path / "eval"
    argv = ["--candidate_responses", str(cand), "--baseline_responses", str(base), "--judge", "api",
            "--judge_model", "fake", "--judge_base_url", judge_server.url, "--judge_api_key_env",
            "SAMI_TEST_JUDGE_KEY", "--both_orders", "--principles", "verifiable", "--output_dir", str(out),
            "--no_progress"]
    assert evaluate.main(argv) == 0
    verdicts = read_verdicts(out / "verdicts_vs_base.jsonl")
    assert len(verdicts) == 12 and {v.outcome for v in verdicts} == {"win"}
    assert {v.candidate_position for v in verdicts} == {"A", "B"}
    summary = json.loads((out / "summary_vs_base.json").read_text())
    assert summary["raw"]["estimate"] == 1.0 and summary["counts"]["pairs"] == 6
    assert summary["judge_stats"]["requests"] == 12 and summary["pairs"]["shared_pairs"] == 6
    assert summary["settings"]["judge_model"] == "fake" and summary["settings"]["principles"] == "verifiable"
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
    argv = ["evaluate", "--candidate_responses", str(cand), "--baseline_responses", str(base), "--judge", "none",
            "--principles", "verifiable", "--output_dir", str(tmp_path / "eval")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("sami evaluate: error: ") and error.count("\n") == 1
    assert "do not answer the same" in error and "only in candidate: 1 ('q5')" in error and "--intersect" in error
    assert cli.main(argv + ["--intersect"]) == 0
    summary = json.loads((tmp_path / "eval" / "summary_vs_base.json").read_text())
    assert summary["pairs"]["only_candidate"] == 1 and summary["pairs"]["shared_pairs"] == 5
    assert "raw" not in summary  # no judge: adherence only


@pytest.mark.parametrize(
    "flags, fix",
    [
        ([], "say what to compare: --candidate_responses + --baseline_responses"),
        (["--candidate", "a"], "give both --candidate and --baseline"),
        (["--candidate_responses", "a.jsonl"], "give both --candidate_responses and --baseline_responses"),
        (["--candidate", "a", "--baseline", "b", "--candidate_responses", "a.jsonl", "--baseline_responses", "b.jsonl"],
         "not both"),
        (["--candidate", "a", "--baseline", "b", "--second_baseline", "c", "--regenerate"],
         "--second_baseline, --regenerate only apply to a run; add --run_dir RUN_DIR"),
        (["--run_dir", "RUN", "--candidate", "a"], "drop --candidate"),
        (["--run_dir", "RUN", "--output_dir", "elsewhere"], "writes into RUN_DIR/iter_<t>/; drop --output_dir"),
    ],
)
def test_bad_flag_combinations_name_the_fix(tmp_path, flags, fix):
    run = make_run(tmp_path / "run", "model: smollm2-135m\n")
    argv = [str(run) if flag == "RUN" else flag for flag in flags]
    if "--run_dir" not in argv and "--output_dir" not in argv:
        argv += ["--output_dir", str(tmp_path / "eval")]
    with pytest.raises(ConfigError) as error:
        evaluate.main(argv)
    assert fix in str(error.value)


def test_usage_errors(tmp_path, capsys):
    assert cli.main(["evaluate", "--output_dir", str(tmp_path)]) == 2
    assert "say what to compare" in capsys.readouterr().err
    cand, base = response_files(tmp_path)
    files = ["--candidate_responses", str(cand), "--baseline_responses", str(base)]
    assert cli.main(["evaluate", *files]) == 2
    assert "give --output_dir" in capsys.readouterr().err
    assert cli.main(["evaluate", *files, "--judge", "none", "--output_dir", str(tmp_path / "e")]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert cli.main(["evaluate", *files, "--output_dir", str(tmp_path / "e")]) == 2
    assert "--judge api needs --judge_model" in capsys.readouterr().err
    assert cli.main(["evaluate", *files, "--judge_api_key_env", "SAMI_SURELY_UNSET_VAR", "--judge_model", "m",
                     "--output_dir", str(tmp_path / "e")]) == 2
    assert "SAMI_SURELY_UNSET_VAR" in capsys.readouterr().err
    assert cli.main(["evaluate", "--run_dir", str(tmp_path / "missing")]) == 2
    assert "run folder" in capsys.readouterr().err
    assert cli.main(["report", "--run_dir", str(tmp_path / "missing")]) == 2


def test_run_dir_defaults_come_from_the_runs_config(tmp_path):
    """Settings not given take the run's config.yaml values; the command line and --config win over them."""
    run = make_run(tmp_path / "run", "model: smollm2-135m\nprinciples: hh\nqueries: summarisation\n"
                   "task: summarisation\nscheme: negations\nnum_constitutions: 3\nmax_new_tokens: 64\n"
                   "max_eval_queries: 5\nprompt_kind: base\ngeneration_batch_size: 4\nseed: 7\niterations: 3\n"
                   "learning_rate: 1.0e-05\njudge: local\nattn_implementation: eager\ndtype: float32\n")
    eval_args, judge_args, principle_args, query_args, constitution_args, generation_args, loading = (
        parse_evaluation_args(evaluate.make_parser, ["--run_dir", str(run), "--max_new_tokens", "9"])
    )
    assert (query_args.queries, query_args.task, query_args.max_eval_queries) == ("summarisation", "summarisation", 5)
    assert (constitution_args.scheme, constitution_args.num_constitutions) == ("negations", 3)
    assert (generation_args.prompt_kind, generation_args.generation_batch_size) == ("base", 4)
    assert generation_args.max_new_tokens == 9  # the command line wins
    assert eval_args.seed == 7 and judge_args.judge == "local"
    assert (loading.attn_implementation, loading.dtype) == ("eager", "float32")  # models load as the run's did
    assert principle_args.principles is None  # the run's principles.yaml, not its source
    assert eval_args.only_iterations is None  # `iterations` (T) of the run is another setting
    config = tmp_path / "eval.yaml"
    config.write_text("num_constitutions: 2\n")
    parsed = parse_evaluation_args(evaluate.make_parser, ["--run_dir", str(run), "--config", str(config)])
    assert parsed[4].num_constitutions == 2 and parsed[4].scheme == "negations"  # --config wins over the run
    defaults = parse_evaluation_args(evaluate.make_parser, ["--candidate", "a", "--baseline", "b"])
    assert defaults[5].max_new_tokens == 350 and defaults[4].scheme == "fixed_pair"  # without a run: the dataclasses


def test_two_models_then_run_layout_and_report(tiny_checkpoints, tmp_path, generated_prompts):
    """Generate with two tiny models, judge with a tiny local judge, then report the run directory."""
    model_a, model_b = tiny_checkpoints
    run = tmp_path / "run"
    out = run / "iter_1"
    argv = ["--candidate", str(model_a), "--candidate_name", "sami-iter1", "--baseline", str(model_b),
            "--baseline_name", "base", "--queries", "dialogue", "--split", "eval", "--max_eval_queries", "3",
            "--principles", "verifiable", "--max_new_tokens", "6", "--judge", "local", "--judge_model",
            str(model_a), "--margin", "0", "--max_unparsed_fraction", "1", "--output_dir", str(out), "--no_progress",
            "--device", "cpu", "--generation_backend", "hf", "--generation_batch_size", "1"]
    assert evaluate.main(argv) == 0
    assert generated_prompts == [1] * 6  # 3 queries x 1 constitution x 2 models, one query per batch
    responses = read_responses(out / "responses_sami-iter1.jsonl")
    assert len(responses) == 3 and all(r.response_tokens <= 6 for r in responses)
    assert responses[0].principles == ["max_50_words", "bulleted_list", "ends_with_question", "all_lowercase",
                                       "no_commas"]
    assert all(responses[0].affirmed)  # --constitutions first: the one affirming every principle
    generations = read_generations(out / "responses_base.jsonl")  # the records `sami generate` writes
    assert [g.provenance["model"] for g in generations] == [str(model_b)] * 3
    assert all(g.template["kind"] == "chat" and g.num_constitutions == 1 for g in generations)
    verdicts = read_verdicts(out / "verdicts_vs_base.jsonl")
    assert len(verdicts) == 3 and all(v.split == "train" for v in verdicts)
    before = (out / "responses_base.jsonl").read_text()
    assert evaluate.main(argv) == 0  # the rerun resumes the responses: nothing is generated
    assert sum(generated_prompts) == 6 and (out / "responses_base.jsonl").read_text() == before
    lines = before.splitlines(keepends=True)
    (out / "responses_base.jsonl").write_text("".join(lines[:2]) + lines[2][:40])  # a run killed mid-write
    assert evaluate.main(argv) == 0  # only the lost query's batch is generated again
    assert sum(generated_prompts) == 7 and (out / "responses_base.jsonl").read_text() == before
    write_metrics(run)
    assert report.main(["--run_dir", str(run)]) == 0
    text = (run / "report" / "report.md").read_text()
    assert "| 1 | sami-iter1 | base | 3 |" in text and "## Verifiable principles" in text


def test_responses_generated_with_other_settings_are_refused(tiny_checkpoints, tmp_path):
    model_a, model_b = tiny_checkpoints
    argv = ["--candidate", str(model_a), "--baseline", str(model_b), "--max_eval_queries", "2",
            "--principles", "verifiable", "--max_new_tokens", "4", "--judge", "none", "--output_dir", str(tmp_path),
            "--no_progress", "--device", "cpu", "--generation_backend", "hf"]
    assert evaluate.main(argv) == 0
    with pytest.raises(SamiError, match="other settings"):
        evaluate.main([*argv, "--max_new_tokens", "5"])  # the last value of a flag wins


@pytest.mark.slow
def test_embedded_model_end_to_end(tmp_path, one_torch_thread):
    """`sami evaluate` + `sami report` on the embedded smollm2: generation, local judge, adherence, figures."""
    run = tmp_path / "run"
    argv = ["--candidate", "smollm2-135m", "--candidate_name", "sami-iter1", "--baseline", "smollm2-135m",
            "--baseline_name", "base", "--prompt_kind", "base", "--queries", "dialogue", "--split", "eval",
            "--max_eval_queries", "3", "--principles", "verifiable", "--max_new_tokens", "24", "--judge", "local",
            "--judge_model", "smollm2-135m", "--allow_unparsed", "--output_dir", str(run / "iter_1"),
            "--no_progress", "--device", "cpu"]
    assert evaluate.main(argv) == 0
    summary = json.loads((run / "iter_1" / "summary_vs_base.json").read_text())
    assert summary["counts"]["pairs"] == 3 and summary["adherence"]
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi/bound": 0.1, "response_length": 20}\n'
                                       '{"iteration": 1, "mi/bound": 0.2, "response_length": 21}\n')
    assert report.main(["--run_dir", str(run)]) == 0
    assert (run / "report" / "win_rates.png").exists()


def test_run_mode_evaluates_every_iteration(tiny_checkpoints, tmp_path, generated_prompts):
    """A run without held-out responses: the base model (the config's `model`) and every checkpoint generate,
    with the run's settings (config.yaml: 2 queries, 4 new tokens)."""
    model_a, model_b = tiny_checkpoints
    run = make_run(tmp_path / "run", f"model: {model_b}\nqueries: dialogue\nmax_eval_queries: 2\nmax_new_tokens: 4\n"
                   "generation_backend: hf\ndevice: cpu\n")
    for t in (1, 2):
        shutil.copytree(model_a, run / f"iter_{t}" / "checkpoint")
    argv = ["--run_dir", str(run), "--second_baseline", str(model_b), "--second_baseline_name", "instruct",
            "--judge", "none", "--no_progress"]
    assert evaluate.main(argv) == 0
    for t in (1, 2):
        for baseline in ("base", "instruct"):
            adherence = json.loads((run / f"iter_{t}" / f"adherence_vs_{baseline}.json").read_text())
            assert adherence["trained_name"] == f"sami-iter{t}" and adherence["base_name"] == baseline
    base = read_responses(run / "eval" / "responses_base.jsonl")
    assert len(base) == 2 and all(r.response_tokens <= 4 for r in base)
    assert (run / "eval" / "responses_instruct.jsonl").exists()
    candidate = read_generations(run / "iter_2" / "responses_sami-iter2.jsonl")
    assert [g.provenance["model"] for g in candidate] == ["iter_2/checkpoint"] * 2  # relative: the run can move
    assert sum(generated_prompts) == 8  # 2 queries x (base, instruct, 2 iterations)
    assert evaluate.main(argv) == 0 and sum(generated_prompts) == 8  # a rerun generates nothing
    assert report.main(["--run_dir", str(run)]) == 0
    assert "## Verifiable principles" in (run / "report" / "report.md").read_text()


def test_run_mode_reuses_the_runs_held_out_generations(judge_server, api_key, tmp_path):
    """`sami run` leaves iter_<t>/eval_generations.jsonl (iter_0 = base): judged as they are, nothing generated."""
    run = make_run(tmp_path / "run", "model: smollm2-135m\nnum_constitutions: 2\n")

    def record(query_id, responses):
        stances = [[{"name": "max_50_words", "affirmed": True, "text": "Brief."}],
                   [{"name": "max_50_words", "affirmed": False, "text": "Long."}]]
        return {"query_id": query_id, "query": f"Tell me about {query_id}.", "task": "dialogue",
                "template": {"task": "dialogue", "kind": "base", "chain_of_thought": False},
                "constitutions": [{"stances": s, "text": f"1. {s[0]['text']}"} for s in stances],
                "responses": responses, "response_tokens": [len(r.split()) for r in responses], "dropped": None}

    for t, responses in ((0, ["word " * 60, "word " * 70]), (1, ["GOOD short.", "word " * 80])):
        write_jsonl(run / f"iter_{t}" / "eval_generations.jsonl", [record(f"q{i}", responses) for i in range(4)])
    argv = ["--run_dir", str(run), "--constitutions", "all", "--judge", "api", "--judge_model", "fake",
            "--judge_base_url", judge_server.url, "--judge_api_key_env", "SAMI_TEST_JUDGE_KEY", "--no_progress"]
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
    assert (run / "eval" / "judge_cache").is_dir()
    assert report.main(["--run_dir", str(run)]) == 0


def test_response_datasets_are_read_like_jsonl(tmp_path, capsys):
    """A datasets folder (with a held-out split) and a parquet file give the same pairs and adherence as the JSONL."""
    from datasets import Dataset, DatasetDict

    cand, base = response_files(tmp_path)
    cand_rows, base_rows = [r.to_dict() for r in read_responses(cand)], [r.to_dict() for r in read_responses(base)]
    folder = tmp_path / "sami_ds"  # save_to_disk of a DatasetDict: the eval split is the one compared
    DatasetDict({"train": Dataset.from_list(base_rows[:2]), "eval": Dataset.from_list(cand_rows)}).save_to_disk(
        str(folder))
    parquet = tmp_path / "base.parquet"
    Dataset.from_list(base_rows).to_parquet(str(parquet))
    summaries = {}
    for name, (candidate, baseline) in {"jsonl": (cand, base), "datasets": (folder, parquet)}.items():
        out = tmp_path / f"eval_{name}"
        argv = ["evaluate", "--candidate_responses", str(candidate), "--baseline_responses", str(baseline),
                "--candidate_name", "sami", "--baseline_name", "base", "--judge", "none", "--principles",
                "verifiable", "--output_dir", str(out)]
        assert cli.main(argv) == 0, capsys.readouterr().err
        summaries[name] = json.loads((out / "summary_vs_base.json").read_text())
    assert summaries["datasets"]["pairs"] == summaries["jsonl"]["pairs"] and summaries["jsonl"]["pairs"]["shared_pairs"] == 6
    assert summaries["datasets"]["adherence"] == summaries["jsonl"]["adherence"]
    rates = {(r["principle"], r["affirmed"]): r["trained_rate"] for r in summaries["jsonl"]["adherence"]}
    assert rates[("max_50_words", True)] == 1.0

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no records here")
    argv = ["evaluate", "--candidate_responses", str(tmp_path / "notes"), "--baseline_responses", str(base),
            "--judge", "none", "--principles", "verifiable", "--output_dir", str(tmp_path / "e")]
    assert cli.main(argv) == 2
    assert "is a folder; give the file to read, or a datasets folder" in capsys.readouterr().err


def test_models_are_loaded_with_the_loading_flags(tiny_checkpoints, tmp_path):
    """--dtype and --attn_implementation reach the generator: they are in the responses' resume key."""
    model_a, model_b = tiny_checkpoints
    out = tmp_path / "eval"
    argv = ["--candidate", str(model_a), "--candidate_name", "a", "--baseline", str(model_b), "--baseline_name", "b",
            "--queries", "dialogue", "--max_eval_queries", "2", "--principles", "verifiable", "--max_new_tokens", "3",
            "--judge", "none", "--output_dir", str(out), "--no_progress", "--device", "cpu", "--generation_backend",
            "hf", "--dtype", "float32", "--attn_implementation", "eager"]
    assert evaluate.main(argv) == 0
    for name in ("a", "b"):
        provenance = read_generations(out / f"responses_{name}.jsonl")[0].provenance
        assert (provenance["dtype"], provenance["attn_implementation"]) == ("float32", "eager")
    summary = json.loads((out / "summary_vs_b.json").read_text())
    assert summary["settings"]["attn_implementation"] == "eager"
    with pytest.raises(ConfigError, match="--judge none judges nothing"):
        evaluate.main([*argv, "--push_verdicts_to_hub", "me/verdicts"])
