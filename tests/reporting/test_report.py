"""Figures render and the Markdown report reads a run directory on its own."""

from __future__ import annotations

import json

import pytest
from matplotlib import image

from sami.errors import SamiError
from sami.reporting import build_report, plot_mi_bound, plot_response_length, plot_win_rates
from sami.run_folder import RunFolder
from sami.scripts import report


def assert_png(path, min_width=400):
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.shape[1] >= min_width and pixels.std() > 0.01  # not blank


def test_report_from_a_run_directory(run_dir):
    path = build_report(run_dir)
    assert path == run_dir / "report" / "report.md"
    text = path.read_text()
    for png in ("mi_bound.png", "response_length.png", "win_rates.png", "adherence.png"):
        assert_png(run_dir / "report" / png)
        assert f"]({png})" in text
    assert "# SAMI run report: demo-run" in text
    assert "| base | 0.120 | 0.090 | 0.150 | 61.0 |" in text  # the metrics table
    assert "| 3 | sami-iter3 | instruct | 40 |" in text  # a win-rate row
    assert "held-out principles" in text and "harmless" in text and "max_50_words" in text
    assert "parse failures" in text and "## Examples" in text and "Final answer" in text
    assert "metrics.jsonl" in text and "iter_3/verdicts_vs_base.jsonl" in text


def test_report_names_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi/bound": 0.1, "response_length": 50}\n'
                                       '{"iteration": 1, "mi/bound": 0.2, "response_length": 55}\n')
    text = build_report(run).read_text()
    assert "No judgements yet" in text and "sami evaluate --run_dir" in text
    assert "| 1 | 0.200 | – | – | 55.0 |" in text
    with pytest.raises(FileNotFoundError, match="not found"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is it a run directory"):
        build_report(tmp_path / "empty")


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", r"metrics.jsonl:3 is not valid JSON"),  # a torn last line too: never dropped in silence
        ('{"iteration": 2, "mi/bound": "high"}',
         r"metrics.jsonl: record 3 \(iteration 2\): 'mi/bound' is 'high', not a number"),
        ('{"iteration": 2, "response_length": [5]}',
         r"record 3 \(iteration 2\): 'response_length' is \[5\], not a number"),
        ('{"iteration": "2", "mi/bound": 0.3}', r"record 3: 'iteration' is '2', not an iteration number"),
        ("[1, 2]", r"record 3 is a list, not a JSON object"),
    ],
)
def test_a_metrics_line_the_report_cannot_show_is_refused(tmp_path, line, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 0, "mi/bound": 0.1}\n{"iteration": 1, "mi/bound": 0.2}\n'
                                       f"{line}\n")
    with pytest.raises(SamiError, match=message):
        build_report(run)
    assert not (run / "report").exists()  # refused before anything is written


def test_metrics_keep_the_last_record_per_iteration(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"iteration": 1, "mi/bound": 0.1}, {"iteration": 0, "mi/bound": 0.05},
                                          {"iteration": 1, "mi/bound": 0.2, "response_length": 9}]))
    assert RunFolder(tmp_path).read_metrics() == [{"iteration": 0, "mi/bound": 0.05},
                                                  {"iteration": 1, "mi/bound": 0.2, "response_length": 9}]


def test_sami_report_writes_where_output_dir_says(run_dir, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert report.main(["--run_dir", str(run_dir), "--output_dir", str(out), "--examples", "0"]) == 0
    text = (out / "report.md").read_text()
    assert "## Examples" not in text and f"sami report --run_dir {run_dir}" in text
    assert not (run_dir / "report").exists()
    assert str(out / "report.md") in capsys.readouterr().out


def test_sami_report_errors_name_the_fix(tmp_path, capsys):
    from sami.cli import main

    assert main(["report"]) == 2
    assert "give --run_dir" in capsys.readouterr().err
    assert main(["report", "--run_dir", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_figures_survive_missing_values(tmp_path):
    metrics = [{"iteration": 0, "mi/bound": None}, {"iteration": 1, "mi/bound": float("nan")}]
    assert_png(plot_mi_bound(metrics, tmp_path / "mi.png"))
    assert_png(plot_response_length([], tmp_path / "len.png"))
    table = {"base": {1: {"raw": {"estimate": 0.6, "ci_low": None, "ci_high": None}, "lc": {"estimate": None}}}}
    assert_png(plot_win_rates(table, tmp_path / "wr.png"))
