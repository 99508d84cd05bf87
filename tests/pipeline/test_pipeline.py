"""`sami run` end to end on a tiny random model: the run folder, the metrics, and resume after a crash."""

import json

import pytest

from sami.pipeline import Pipeline, format_table, read_metrics
from sami.scripts import run


def tiny_run_args(model_dir, run_dir, *extra):
    return [
        "--model", str(model_dir), "--principles", "hh", "--queries", "dialogue",
        "--max_train_queries", "8", "--max_eval_queries", "3", "--max_new_tokens", "4", "--temperature", "1.0",
        "--generation_dtype", "float32", "--drop_identical", "false", "--drop_truncated", "none",
        "--iterations", "2", "--initial_steps", "1", "--steps_growth", "1", "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-3", "--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "1",
        "--run_dir", str(run_dir), "--output_dir", "unused", *extra,
    ]


def test_run_writes_the_whole_run_folder(tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run.main(tiny_run_args(tiny_model_dir, run_dir)) == 0
    metrics = read_metrics(run_dir)
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert all("mi_bound" in m and "response_length" in m for m in metrics)
    assert [m.get("train_steps") for m in metrics] == [None, 1, 2]
    for name in ("config.yaml", "principles.yaml", "constitutions.jsonl", "state.json"):
        assert (run_dir / name).exists(), name
    for t in (1, 2):
        assert (run_dir / f"iter_{t}" / "checkpoint" / "config.json").exists()
        assert len((run_dir / f"iter_{t}" / "generations.jsonl").read_text().splitlines()) == 2 * t
    # iteration 2 generated with iteration 1's model
    record = json.loads((run_dir / "iter_2" / "generations.jsonl").read_text().splitlines()[0])
    assert record["provenance"]["model"].endswith("iter_1/checkpoint")
    assert "| 2 |" in capsys.readouterr().out


def test_resume_after_a_crash_recomputes_nothing_finished(tiny_model_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    original_train = Pipeline._train
    calls = []

    def crash_in_iteration_2(self, start, iteration_dir, steps):
        calls.append(iteration_dir.name)
        if iteration_dir.name == "iter_2":
            raise KeyboardInterrupt("killed")
        return original_train(self, start, iteration_dir, steps)

    monkeypatch.setattr(Pipeline, "_train", crash_in_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        run.main(tiny_run_args(tiny_model_dir, run_dir))
    done = json.loads((run_dir / "state.json").read_text())["done"]
    assert done == ["evaluate_0", "generate_1", "train_1", "evaluate_1", "generate_2"]
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.jsonl")}

    with pytest.raises(FileExistsError, match="--resume"):
        run.main(tiny_run_args(tiny_model_dir, run_dir))
    with pytest.raises(ValueError, match="differ from the run's config.yaml"):
        run.main(tiny_run_args(tiny_model_dir, run_dir, "--resume", "true", "--iterations", "3"))

    monkeypatch.setattr(Pipeline, "_train", original_train)
    assert run.main(tiny_run_args(tiny_model_dir, run_dir, "--resume", "true")) == 0
    assert [m["iteration"] for m in read_metrics(run_dir)] == [0, 1, 2]
    for path, stamp in stamps.items():
        if path.name != "metrics.jsonl":
            assert path.stat().st_mtime_ns == stamp, f"{path} was rewritten"
    assert calls == ["iter_1", "iter_2"]


def test_format_table_has_a_row_per_iteration():
    table = format_table([
        {"iteration": 0, "mi_bound": 0.1, "mi_bound_rows": 0.1, "mi_bound_cols": 0.1, "accuracy_rows": 0.5,
         "accuracy_cols": 0.5, "response_length": 40.0},
        {"iteration": 1, "mi_bound": 0.2, "mi_bound_rows": 0.2, "mi_bound_cols": 0.2, "accuracy_rows": 0.7,
         "accuracy_cols": 0.7, "response_length": 35.0, "train_queries": 8, "train_kept": 7},
    ])
    assert table.splitlines()[3].startswith("| 1 | 0.2000") and "7/8" in table


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--queries", "tldr", "--task", "dialogue"], "set --task summarisation"),
        (["--chain_of_thought", "true", "--max_new_tokens", "50"], "too small"),
    ],
)
def test_inconsistent_configs_are_refused_before_any_work(tmp_path, extra, message):
    args = ["--principles", "hh", "--run_dir", str(tmp_path / "run"), "--output_dir", "x", *extra]
    with pytest.raises(ValueError, match=message):
        run.main(args)
    assert not (tmp_path / "run").exists()
