"""A Markdown report of a SAMI run, built from its run folder alone.

Reads (every part optional; a missing part is named in the report with the command that makes it;
the paths are :class:`sami.run_folder.RunFolder`'s)::

    RUN_DIR/config.yaml                    the run's settings (a few are shown; num_constitutions gives log C)
    RUN_DIR/metrics.jsonl                  one record per iteration: iteration (0 = base), mi/bound,
                                           mi/bound_rows, mi/bound_cols, response_length [, ...]
    RUN_DIR/principles.yaml                the principles of the run
    RUN_DIR/iter_<t>/verdicts_vs_*.jsonl   judgements of iteration t's model against a baseline
    RUN_DIR/iter_<t>/summary_vs_*.json     the summaries ``sami evaluate`` wrote (judge counters)
    RUN_DIR/iter_<t>/adherence_vs_*.json   verifiable-principle adherence, base vs iteration t

and writes ``RUN_DIR/report/report.md`` with the PNGs beside it. Win rates are recomputed from
the verdicts (the source of truth), not copied from the summaries. A ``metrics.jsonl`` line the
report could show only in part (not JSON, no iteration, a metric that is no number) is refused
before anything is written (:func:`check_metrics`), never left out in silence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from sami.evaluation.winrates import principle_keys, summarize
from sami.jsonl import read_json, read_jsonl
from sami.principles.io import load_principles
from sami.records import Verdict, read_verdicts
from sami.reporting import figures
from sami.run_folder import IterationFolder, RunFolder, RunFolderError


# ------------------------------------------------------------------------------------ loading
def load_verdicts(run: RunFolder) -> dict[int, dict[str, list[Verdict]]]:
    """``{iteration: {baseline: verdicts}}`` from every ``iter_<t>/verdicts_vs_*.jsonl``."""
    result: dict[int, dict[str, list[Verdict]]] = {}
    for t, iteration in run.iterations().items():
        for path in iteration.verdict_files():
            for verdict in read_verdicts(path):
                result.setdefault(t, {}).setdefault(verdict.baseline, []).append(verdict)
    return result


def _load_json_files(run: RunFolder, files: Callable[[IterationFolder], list[Path]], what: str) -> dict[int, list]:
    """``{iteration: [document, ...]}`` of the JSON files ``files`` lists in every iteration's folder."""
    result: dict[int, list] = {}
    for t, iteration in run.iterations().items():
        for path in files(iteration):
            result.setdefault(t, []).append(read_json(path, what=what))
    return result


NUMERIC_METRICS = ("response_length", "response_length_std", "num_constitutions", "identical_pairs", "eval_queries",
                   "eval_scored", "train_queries", "train_kept", "train_steps")
"""Fields of ``metrics.jsonl`` records that must be numbers (or null), besides every metric named ``a/b``
(``mi/bound``, ``accuracy/rows``, ...)."""


class MetricsFileError(RunFolderError):
    """A line of ``metrics.jsonl`` that the report cannot show: not JSON, no iteration, a metric that is no number."""


def check_metrics(run: RunFolder) -> None:
    """Refuse a ``metrics.jsonl`` that the report would show only in part, naming the file, record and field:
    a line that is not JSON (a torn last line too), a record without an iteration number, or a metric that
    is not a number."""
    fix = "correct or delete that line, then run `sami report` again"
    rows = read_jsonl(run.metrics_path, missing="empty", torn_tail="error", what="metrics file")
    for number, row in enumerate(rows, start=1):
        where = f"{run.metrics_path}: record {number}"
        if not isinstance(row, dict):
            raise MetricsFileError(f"{where} is a {type(row).__name__}, not a JSON object; {fix}")
        t = row.get("iteration")
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise MetricsFileError(f"{where}: 'iteration' is {t!r}, not an iteration number (0, 1, ...); {fix}")
        for key, value in row.items():
            numeric = key in NUMERIC_METRICS or "/" in key
            if numeric and value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise MetricsFileError(f"{where} (iteration {t}): {key!r} is {value!r}, not a number; {fix}")


# ------------------------------------------------------------------------------------ formatting
def _num(x, digits: int = 2) -> str:
    return "–" if x is None or not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(x) -> str:
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _rate(rate: dict | None) -> str:
    """``0.62 [0.55, 0.69]``; the note when not estimable."""
    if not rate or rate.get("estimate") is None:
        return f"– ({rate.get('note')})" if rate and rate.get("note") else "–"
    if rate.get("ci_low") is None:
        return f"{_num(rate['estimate'])}"
    return f"{_num(rate['estimate'])} [{_num(rate['ci_low'])}, {_num(rate['ci_high'])}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " …"


def _counts(counts: dict) -> str:
    return f"{counts['win']}/{counts['loss']}/{counts['tie']}/{counts['unparsed']}"


# ------------------------------------------------------------------------------------ the report
INTRO = """\
SAMI fine-tunes a language model so that its responses carry more information about the
constitution (a list of principles) they were written under, with no preference labels. Each
iteration generates responses under sampled constitutions with the previous model, then trains
the base model again so that each response is more likely under its own constitution than under
the others (an InfoNCE objective). This report shows (1) the InfoNCE lower bound on the mutual
information between responses and constitutions, which should rise over iterations; (2) the
mean response length, since a length drift can inflate judge preferences; (3) how often a judge
prefers the trained model's response over a baseline's under the same constitution, with
length-corrected estimates; (4) adherence to principles a program can check, where available."""

WIN_RATE_NOTES = """\
*How to read the win rates.* A win scores 1, a tie 0.5, a loss 0; an unparsed judge answer also
scores 0.5 but is counted apart (W/L/T/U). **raw** is the mean score. **balanced** is the
paper's length-corrected win rate: the mean of the win rate over pairs where the trained
model's response is longer than the baseline's and over pairs where it is shorter. **LC** is
the logistic length-controlled win rate (AlpacaEval 2 style): the win rate predicted at equal
length by a logistic regression on the standardised length difference. Brackets are 95%
confidence intervals; *p* is a two-sided t-test against 0.5. With both orders judged, the two
judgements of a pair are averaged before any statistic."""


def build_report(run_dir: str | Path, output_dir: str | Path | None = None, max_examples: int = 2) -> Path:
    """Write ``report.md`` and its figures for a run folder (into ``RUN_DIR/report`` by default); return its path."""
    run = RunFolder(run_dir).require()
    out = Path(output_dir) if output_dir is not None else run.report_dir
    check_metrics(run)
    metrics = run.read_metrics()
    config = run.read_config()
    for record in metrics:  # the log C ceiling of the MI figure
        if "num_constitutions" not in record and isinstance(config.get("num_constitutions"), int):
            record["num_constitutions"] = config["num_constitutions"]
    verdicts = load_verdicts(run)
    summaries = _load_json_files(run, IterationFolder.summary_files, "summary file")
    adherence = _load_json_files(run, IterationFolder.adherence_files, "adherence file")
    if not metrics and not verdicts and not adherence:
        raise RunFolderError(
            f"{run.root} holds no metrics.jsonl, no iter_<t>/verdicts_vs_*.jsonl and no iter_<t>/adherence_vs_*.json; "
            "is it a run directory? (`sami run` writes one; `sami evaluate --run_dir RUN_DIR` adds the verdicts)"
        )
    out.mkdir(parents=True, exist_ok=True)
    recomputed = {t: {b: summarize(vs) for b, vs in per.items()} for t, per in verdicts.items()}

    sections = [f"# SAMI run report: {run.root.resolve().name}", "", INTRO, ""]
    sections += _config_section(config)
    sections += _principles_section(run)
    sections += _metrics_section(metrics, out)
    sections += _win_rate_section(recomputed, out)
    sections += _breakdown_section(recomputed)
    sections += _adherence_section(adherence, out)
    sections += _judge_section(recomputed, summaries)
    sections += _examples_section(verdicts, max_examples)
    sections += ["## Sources", "", f"Built by `sami report --run_dir {run.root}` from:", ""]
    sources = [run.metrics_path] + [p for it in run.iterations().values() for p in sorted(it.path.glob("*.json*"))]
    sections += [f"- `{run.relative(p)}`" for p in sources if p.exists()] + [""]
    path = out / "report.md"
    path.write_text("\n".join(sections), encoding="utf-8")
    return path


CONFIG_KEYS = ("model", "queries", "task", "scheme", "num_constitutions", "iterations", "initial_steps",
               "steps_growth", "continue_from_previous", "learning_rate", "max_new_tokens", "seed")


def _config_section(config: dict) -> list[str]:
    rows = [[key, f"`{config[key]}`"] for key in CONFIG_KEYS if key in config]
    if not rows:
        return []
    return ["## Run", "", "The main settings (all of them: `config.yaml`).", "", _table(["setting", "value"], rows), ""]


def _principles_section(run: RunFolder) -> list[str]:
    if not run.principles.exists():
        return []
    principle_set = load_principles(run.principles)
    rows = [[p.name, p.split, p.definition, p.antithesis] for p in principle_set]
    task = f"Task: {principle_set.task}\n\n" if principle_set.task else ""
    return ["## Principles", "", task + _table(["name", "split", "definition", "antithesis"], rows), ""]


def _metrics_section(metrics: list[dict], out: Path) -> list[str]:
    lines = ["## Mutual information and response length", ""]
    if not metrics:
        return lines + ["No `metrics.jsonl` in the run directory: nothing to show.", ""]
    unit = next((m["response_length_unit"] for m in metrics if m.get("response_length_unit")), "tokens")
    figures.plot_mi_bound(metrics, out / "mi_bound.png")
    figures.plot_response_length(metrics, out / "response_length.png", unit=unit)
    rows = [
        ["base" if m["iteration"] == 0 else str(m["iteration"]), _num(m.get("mi/bound"), 3),
         _num(m.get("mi/bound_rows"), 3), _num(m.get("mi/bound_cols"), 3), _num(m.get("response_length"), 1)]
        for m in metrics
    ]
    lines += [
        "The InfoNCE bound is I(y; c | x) >= log C - CE, as the run measured it (`metrics.jsonl`); it is at "
        "most log C for C constitutions per query. *rows*: which response belongs to each constitution; *cols*: which "
        "constitution produced each response.",
        "",
        _table(["iteration", "MI bound (nats)", "rows", "cols", f"mean length ({unit})"], rows),
        "",
        "![MI lower bound per iteration](mi_bound.png) ![mean response length per iteration](response_length.png)",
        "",
    ]
    return lines


def _win_rate_section(recomputed: dict[int, dict[str, dict]], out: Path) -> list[str]:
    lines = ["## Win rates", ""]
    if not recomputed:
        return lines + [
            "No judgements yet. Run `sami evaluate --run_dir RUN_DIR ...` to judge each iteration against the base "
            "model (and a second baseline), then `sami report --run_dir RUN_DIR` again.",
            "",
        ]
    table: dict[str, dict[int, dict]] = {}
    rows = []
    for iteration, per in sorted(recomputed.items()):
        for baseline, summary in sorted(per.items()):
            table.setdefault(baseline, {})[iteration] = summary
            counts = summary["counts"]
            rows.append([
                str(iteration), summary.get("candidate") or "", baseline, str(counts["pairs"]),
                _rate(summary["raw"]), _rate(summary["balanced"]), _rate(summary["lc"]),
                _p(summary["lc"].get("p_value")), _counts(counts),
                f"{_num(summary['length']['candidate_mean'], 0)} / {_num(summary['length']['baseline_mean'], 0)}",
            ])
    figures.plot_win_rates(table, out / "win_rates.png")
    header = ["iter", "model", "vs", "pairs", "raw", "balanced", "LC", "p (LC)", "W/L/T/U", "words (model / base)"]
    return lines + [WIN_RATE_NOTES, "", _table(header, rows), "", "![win rates per iteration](win_rates.png)", ""]


def _breakdown_section(recomputed: dict[int, dict[str, dict]]) -> list[str]:
    rows = []
    for iteration, per in sorted(recomputed.items()):
        for baseline, summary in sorted(per.items()):
            for kind, groups in (("split", summary["by_split"]), ("principle", summary["by_principle"])):
                if kind == "split" and set(groups) == {"unspecified"}:
                    continue
                for name, group in groups.items():
                    label = {"train": "training principles", "eval": "held-out principles"}.get(name, name)
                    rows.append([str(iteration), baseline, kind, label, str(group["counts"]["pairs"]),
                                 _rate(group["raw"]), _rate(group["lc"]), _p(group["lc"].get("p_value")),
                                 _counts(group["counts"])])
    if not rows:
        return []
    return [
        "## Win rates per principle and split",
        "",
        "A pair counts toward every principle of its constitution (`name (antithesis)` when the constitution "
        "stated its opposite). *held-out principles* were never used in training.",
        "",
        _table(["iter", "vs", "by", "group", "pairs", "raw", "LC", "p (LC)", "W/L/T/U"], rows),
        "",
    ]


def _adherence_section(adherence: dict[int, list[dict]], out: Path) -> list[str]:
    if not adherence:
        return []
    lines = [
        "## Verifiable principles",
        "",
        "Adherence checked by a program (no judge): under a constitution that affirms a principle, the response "
        "adheres when the checker passes; under its antithesis, when it fails. *p*: exact McNemar test on the "
        "queries both models answered.",
        "",
    ]
    rows = []
    last_rows, last_names = None, ("base", "trained")
    for iteration, reports in sorted(adherence.items()):
        for report in reports:
            base_name, trained_name = report.get("base_name", "base"), report.get("trained_name", f"iter {iteration}")
            for row in report.get("rows", []):
                rows.append([str(iteration), trained_name, base_name, row["principle"],
                             "affirmed" if row["affirmed"] else "antithesis",
                             f"{_num(row.get('base_rate'))} (n={row['base_n']})",
                             f"{_num(row.get('trained_rate'))} (n={row['trained_n']})",
                             _num(row.get("difference")), _p(row.get("p_value"))])
            last_rows, last_names = report.get("rows", []), (base_name, trained_name)
    lines += [_table(["iter", "model", "vs", "principle", "stance", "baseline", "model", "difference", "p"], rows), ""]
    if last_rows:
        figures.plot_adherence(last_rows, out / "adherence.png", *last_names)
        lines += ["![adherence to verifiable principles, last iteration](adherence.png)", ""]
    return lines


def _judge_section(recomputed: dict[int, dict[str, dict]], summaries: dict[int, list[dict]]) -> list[str]:
    if not recomputed:
        return []
    lines = [
        "## The judge",
        "",
        "Unparsed verdicts are answers not in the expected format (parse failures) or requests that failed; "
        "both score 0.5 and are listed here. *chose A* is how often the judge picked the first position "
        "(positions are randomised, so far from 0.5 means a position bias).",
        "",
    ]
    rows = []
    for iteration, per in sorted(recomputed.items()):
        for baseline, summary in sorted(per.items()):
            counts = summary["counts"]
            stats = next((s.get("judge_stats") for s in summaries.get(iteration, [])
                          if s.get("baseline") == baseline and s.get("judge_stats")), None) or {}
            rows.append([str(iteration), baseline, summary.get("judge") or "", str(counts["judgements"]),
                         str(counts["parse_failures"]), str(counts["failed"]),
                         _num(counts.get("judge_chose_a_fraction")),
                         str(stats.get("cache_hits", "–")), str(stats.get("retries", "–"))])
    header = ["iter", "vs", "judge", "judgements", "parse failures", "failed requests", "chose A", "cache hits",
              "retries"]
    return lines + [_table(header, rows), ""]


def _examples_section(verdicts: dict[int, dict[str, list[Verdict]]], max_examples: int) -> list[str]:
    if not verdicts or max_examples <= 0:
        return []
    iteration = max(verdicts)
    lines = ["## Examples", "", f"The first judged pairs of iteration {iteration} (responses shortened).", ""]
    for baseline, items in sorted(verdicts[iteration].items()):
        for verdict in items[:max_examples]:
            principles = ", ".join(principle_keys(verdict)) or "–"
            lines += [
                f"**{verdict.pair_id}** ({verdict.candidate} vs {baseline}; principles: {principles}; the model "
                f"was {verdict.candidate_position}; judge said {verdict.judge_verdict} -> **{verdict.outcome}**)",
                "",
                f"> **Constitution:** {_short(verdict.constitution, 300)}",
                ">",
                f"> **Query:** {_short(verdict.query, 300)}",
                ">",
                f"> **{verdict.candidate}:** {_short(verdict.candidate_response)}",
                ">",
                f"> **{baseline}:** {_short(verdict.baseline_response)}",
                ">",
                f"> **Judge:** {_short(verdict.raw, 300) or '(empty)'}" + (f" — error: {verdict.error}"
                                                                            if verdict.error else ""),
                "",
            ]
    return lines
