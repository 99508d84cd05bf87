"""`sami run` end to end on a tiny random model: the run folder, the metrics, and resume after a crash."""

import json

import pytest

from sami.errors import ConfigError
from sami.pipeline import Pipeline, format_table
from sami.run_folder import RunFolder
from sami.scripts import run


def tiny_run_args(model_dir, run_dir, *extra):
    return [
        "--model", str(model_dir), "--principles", "hh", "--queries", "dialogue",
        "--max_train_queries", "8", "--max_eval_queries", "3", "--max_new_tokens", "4", "--temperature", "1.0",
        "--generation_dtype", "float32", "--drop_identical", "false", "--drop_truncated", "none",
        "--iterations", "2", "--initial_steps", "1", "--steps_growth", "1", "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-3", "--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "1",
        "--output_dir", str(run_dir), *extra,
    ]


def test_run_writes_the_whole_run_folder(tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run.main(tiny_run_args(tiny_model_dir, run_dir)) == 0
    metrics = RunFolder(run_dir).read_metrics()
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert all("mi/bound" in m and "accuracy/rows" in m and "response_length" in m for m in metrics)
    assert [m.get("train_steps") for m in metrics] == [None, 1, 2]
    for name in ("config.yaml", "principles.yaml", "constitutions.jsonl", "state.json"):
        assert (run_dir / name).exists(), name
    config = RunFolder(run_dir).read_config()
    assert config["model"] == str(tiny_model_dir) and "output_dir" not in config  # the folder is no setting
    for t in (1, 2):
        assert (run_dir / f"iter_{t}" / "checkpoint" / "config.json").exists()
        assert len((run_dir / f"iter_{t}" / "generations.jsonl").read_text().splitlines()) == 2 * t
    # iteration 2 generated with iteration 1's model
    record = json.loads((run_dir / "iter_2" / "generations.jsonl").read_text().splitlines()[0])
    assert record["provenance"]["model"].endswith("iter_1/checkpoint")
    out = capsys.readouterr()
    assert "| 2 |" in out.out
    # the trainer's per-step metrics go to the run's log, not to the terminal
    log = RunFolder(run_dir).log_path.read_text()
    assert "step 1: {'loss'" in log and "mi/bound" in log
    assert "step 1: {" not in out.out + out.err and "{'loss'" not in out.out + out.err


def test_resume_after_a_crash_recomputes_nothing_finished(tiny_model_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    original_train = Pipeline._train
    calls = []

    def crash_in_iteration_2(self, t):
        calls.append(f"iter_{t}")
        if t == 2:
            raise KeyboardInterrupt("killed")
        return original_train(self, t)

    monkeypatch.setattr(Pipeline, "_train", crash_in_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        run.main(tiny_run_args(tiny_model_dir, run_dir))
    done = json.loads((run_dir / "state.json").read_text())["done"]
    assert done == ["evaluate_0", "generate_1", "train_1", "evaluate_1", "generate_2"]
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.jsonl")}

    with pytest.raises(ConfigError, match="--resume"):
        run.main(tiny_run_args(tiny_model_dir, run_dir))
    with pytest.raises(ConfigError, match="differ from the run's config.yaml"):
        run.main(tiny_run_args(tiny_model_dir, run_dir, "--resume", "true", "--iterations", "3"))

    monkeypatch.setattr(Pipeline, "_train", original_train)
    assert run.main(tiny_run_args(tiny_model_dir, run_dir, "--resume", "true")) == 0
    assert [m["iteration"] for m in RunFolder(run_dir).read_metrics()] == [0, 1, 2]
    for path, stamp in stamps.items():
        if path.name != "metrics.jsonl":
            assert path.stat().st_mtime_ns == stamp, f"{path} was rewritten"
    assert calls == ["iter_1", "iter_2"]


def test_format_table_has_a_row_per_iteration():
    table = format_table([
        {"iteration": 0, "mi/bound": 0.1, "mi/bound_rows": 0.1, "mi/bound_cols": 0.1, "accuracy/rows": 0.5,
         "accuracy/cols": 0.5, "response_length": 40.0},
        {"iteration": 1, "mi/bound": 0.2, "mi/bound_rows": 0.2, "mi/bound_cols": 0.2, "accuracy/rows": 0.7,
         "accuracy/cols": 0.7, "response_length": 35.0, "train_queries": 8, "train_kept": 7},
    ])
    assert table.splitlines()[3].startswith("| 1 | 0.2000") and "7/8" in table
    assert "adherence" not in table  # only with verifiable principles
    assert table.splitlines() == [
        ("| iteration | MI bound (nats) | rows | cols | accuracy | identical pairs | response length (tokens) "
         "| train data kept |"),
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        "| 0 | 0.1000 | 0.1000 | 0.1000 | 0.500 | nan | 40.0 | - |",
        "| 1 | 0.2000 | 0.2000 | 0.2000 | 0.700 | nan | 35.0 | 7/8 |",
    ]
    adherence = {"adherence/affirmed": 0.25, "adherence/antithesis": 0.9, "repetition": 0.01}
    table = format_table([{"iteration": 0, "response_length": 40.0, **adherence}])
    assert table.splitlines()[2].endswith("| 40.0 | 25% | 90% | 0.010 | - |")


def test_the_run_folder_must_be_named(tmp_path, monkeypatch, capsys):
    from sami.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--principles", "hh"]) == 2
    assert "give --output_dir" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no trainer_output/ or other default folder


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--queries", "tldr", "--task", "dialogue"], "set --task summarisation"),
        (["--chain_of_thought", "true", "--max_new_tokens", "50"], "too small"),
    ],
)
def test_inconsistent_configs_are_refused_before_any_work(tmp_path, extra, message):
    args = ["--principles", "hh", "--output_dir", str(tmp_path / "run"), *extra]
    with pytest.raises(ConfigError, match=message):
        run.main(args)
    assert not (tmp_path / "run").exists()


def test_judge_iterations_adds_the_evaluation_protocol_as_a_stage(tiny_model_dir, tmp_path):
    """--judge_iterations runs `sami evaluate --run_dir` after each iteration; verifiable principles need no judge."""
    run_dir = tmp_path / "run"
    argv = tiny_run_args(tiny_model_dir, run_dir, "--judge_iterations", "true", "--judge", "none")
    argv[argv.index("hh")] = "verifiable"
    assert run.main(argv) == 0
    folder = RunFolder(run_dir)
    assert [s for s in folder.done_stages() if s.startswith("judge_")] == ["judge_1", "judge_2"]
    for t in (1, 2):
        adherence = json.loads(folder.iteration(t).adherence("base").read_text())
        assert adherence["trained_name"] == f"sami-iter{t}" and adherence["rows"]
    assert folder.read_config()["judge"] == "none"  # `sami evaluate --run_dir` inherits the run's judge


def test_verifiable_principles_add_adherence_and_the_effect_summary(tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = tiny_run_args(tiny_model_dir, run_dir, "--scheme", "diverse", "--principles_per_constitution", "1")
    argv[argv.index("hh")] = "verifiable"
    assert run.main(argv) == 0
    metrics = RunFolder(run_dir).read_metrics()
    assert all(0 <= m["adherence/affirmed"] <= 1 and 0 <= m["adherence/antithesis"] <= 1 for m in metrics)
    assert all(0 <= m["repetition"] <= 1 for m in metrics)
    out = capsys.readouterr().out
    assert "adherence: affirmed | antithesis | repetition |" in out
    assert "base model vs iteration 2:" in out and "exact McNemar p" in out
