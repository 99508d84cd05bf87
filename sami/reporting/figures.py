"""The paper's figures as PNG files (matplotlib, Agg backend: no display needed).

* :func:`plot_mi_bound`: the InfoNCE lower bound on I(y; c | x) per iteration, averaged and per
  direction, with its ceiling log C (the paper's Figs. 2-3, left).
* :func:`plot_response_length`: mean response length per iteration.
* :func:`plot_win_rates`: win rate per iteration against each baseline (base, instruct ...), one
  panel per estimate (raw, balanced length-corrected, logistic length-controlled), 95% CIs as
  error bars and the 0.5 line of "no better than the baseline".
* :func:`plot_effect`: the effect benchmark (docs/effect.md): MI bound, adherence to training and
  held-out principles with paired 95% intervals, and the coherence guards.

Iteration 0 is the base model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
METHOD_TITLES = {
    "raw": "raw (ties = 0.5)",
    "balanced": "length-corrected (balanced)",
    "lc": "length-controlled (logistic)",
}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _iteration_axis(ax, iterations: Sequence[int]) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ticks = sorted(set(iterations))
    if ticks and len(ticks) <= 12:
        ax.set_xticks(ticks)
        ax.set_xticklabels(["base" if t == 0 else str(t) for t in ticks])
        ax.set_xlim(min(ticks) - 0.3, max(ticks) + 0.3)
    ax.set_xlabel("iteration")
    ax.grid(True, alpha=0.3)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_mi_bound(metrics: Sequence[Mapping], path: str | Path, title: str = "Mutual information lower bound") -> Path:
    """MI lower bound per iteration from ``metrics.jsonl`` records (``iteration``, ``mi/bound``,
    ``mi/bound_rows``, ``mi/bound_cols``; ``num_constitutions`` draws the ceiling log C)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    series = [
        ("mi/bound", "average of both directions", "-", "o"),
        ("mi/bound_rows", "rows: which response for c_i", "--", "s"),
        ("mi/bound_cols", "columns: which c for y_j", ":", "^"),
    ]
    iterations, values = [], []
    for (key, label, style, marker), color in zip(series, COLORS):
        points = [(m["iteration"], m[key]) for m in metrics if _finite(m.get(key))]
        if points:
            xs, ys = zip(*points)
            iterations += xs
            values += ys
            ax.plot(xs, ys, linestyle=style, marker=marker, color=color, label=label)
    ceilings = {m.get("num_constitutions") for m in metrics if _finite(m.get("num_constitutions"))}
    if len(ceilings) == 1:
        ceiling = math.log(ceilings.pop())
        if values and max(values) < 0.3 * ceiling:  # drawing the ceiling would flatten the curves
            title += f"\n(the ceiling log C = {ceiling:.2f} is off the scale)"
        else:
            ax.axhline(ceiling, color="grey", linestyle="-.", linewidth=1, label=f"ceiling log C = {ceiling:.2f}")
    ax.set_ylabel("InfoNCE lower bound (nats)")
    ax.set_title(title, fontsize=11)
    _iteration_axis(ax, iterations)
    if iterations:  # below the axes, where it can never hide a point
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "no MI measurements", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_response_length(
    metrics: Sequence[Mapping], path: str | Path, unit: str = "tokens", title: str = "Mean response length"
) -> Path:
    """Mean response length per iteration (``response_length``; ``response_length_std`` adds a band)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    points = [(m["iteration"], m["response_length"], m.get("response_length_std"))
              for m in metrics if _finite(m.get("response_length"))]
    if points:
        xs, ys, sds = zip(*points)
        ax.plot(xs, ys, marker="o", color=COLORS[0])
        if all(_finite(s) for s in sds):
            ax.fill_between(xs, [y - s for y, s in zip(ys, sds)], [y + s for y, s in zip(ys, sds)],
                            color=COLORS[0], alpha=0.15, label="± 1 sd")
            ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no length measurements", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel(f"mean response length ({unit})")
    ax.set_title(title)
    _iteration_axis(ax, [p[0] for p in points])
    return _save(fig, path)


def plot_win_rates(
    table: Mapping[str, Mapping[int, Mapping]],
    path: str | Path,
    methods: Sequence[str] = ("raw", "balanced", "lc"),
    title: str = "Win rate of the SAMI model per iteration",
) -> Path:
    """Win rates per iteration with 95% CIs, one line per baseline and one panel per estimate.

    Args:
        table: ``{baseline: {iteration: summary}}`` where a summary is what
            :func:`sami.evaluation.winrates.win_rates` returns (``summary[method]["estimate"]``,
            ``["ci_low"]``, ``["ci_high"]``).
        path: the PNG to write.
        methods: which estimates, one panel each.
    """
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.9), sharey=True, squeeze=False)
    baselines = list(table)
    offsets = {b: (i - (len(baselines) - 1) / 2) * 0.08 for i, b in enumerate(baselines)}
    all_iterations = sorted({t for per in table.values() for t in per})
    for ax, method in zip(axes[0], methods):
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        drawn = False
        for baseline, color in zip(baselines, COLORS):
            rows = []
            for iteration, summary in sorted(table[baseline].items()):
                rate = summary.get(method) or {}
                if _finite(rate.get("estimate")):
                    low = rate["ci_low"] if _finite(rate.get("ci_low")) else rate["estimate"]
                    high = rate["ci_high"] if _finite(rate.get("ci_high")) else rate["estimate"]
                    rows.append((iteration + offsets[baseline], rate["estimate"], low, high))
            if not rows:
                continue
            xs, ys, lows, highs = zip(*rows)
            errors = [[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, color=color, label=f"vs {baseline}")
            drawn = True
        ax.set_title(METHOD_TITLES.get(method, method), fontsize=10)
        ax.set_ylim(0, 1)
        _iteration_axis(ax, all_iterations)
        if not drawn:
            ax.text(0.5, 0.35, "not estimable", ha="center", va="center", transform=ax.transAxes, color="grey")
    axes[0][0].set_ylabel("win rate (95% CI)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        if not handles:
            handles, labels = ax.get_legend_handles_labels()
    if handles:
        axes[0][-1].legend(handles, labels, fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_adherence(
    rows: Sequence[Mapping], path: str | Path, base_name: str = "base", trained_name: str = "trained"
) -> Path:
    """Adherence per verifiable principle (affirmed stances), base vs trained, as paired bars."""
    rows = [r for r in rows if r.get("affirmed", True)]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 3.8))
    names = [r["principle"] for r in rows]
    xs = range(len(rows))
    base = [r.get("base_rate") if _finite(r.get("base_rate")) else 0 for r in rows]
    trained = [r.get("trained_rate") if _finite(r.get("trained_rate")) else 0 for r in rows]
    for offset, values, color, label in ((-0.2, base, COLORS[0], base_name), (0.2, trained, COLORS[1], trained_name)):
        bars = ax.bar([x + offset for x in xs], values, width=0.4, color=color, label=label)
        ax.bar_label(bars, labels=[f"{100 * v:.0f}%" for v in values], fontsize=7, padding=2)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.18)  # room for the labels and the legend above the 100% line
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("fraction adhering")
    ax.set_title("Verifiable principles (affirmed stances)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper center", frameon=False)
    return _save(fig, path)


def plot_effect(scores: Sequence[Mapping], path: str | Path) -> Path:
    """The effect benchmark's figure (``benchmarks/effect.py``): per iteration, the MI bound in both
    directions; adherence to the training principles and to the held-out ones (affirmed and antithesis,
    95% intervals from the paired difference); and the coherence guards."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    iterations = [s["iteration"] for s in scores]
    mi_ax, adherence_ax, guard_ax = axes
    for key, label, style in (("mi_rows", "rows", "-"), ("mi_cols", "columns", "--")):
        mi_ax.plot(iterations, [s[key] for s in scores], linestyle=style, marker="o", label=label)
    mi_ax.set_title("held-out MI lower bound (nats)")
    series = [("affirmed", "training principles, affirmed", "-"), ("antithesis", "training principles, antithesis", "--"),
              ("heldout_affirmed", "held-out principles, affirmed", ":"),
              ("heldout_antithesis", "held-out principles, antithesis", "-.")]
    for (key, label, style), color in zip(series, COLORS):
        points = [(s["iteration"], s[key]) for s in scores if s.get(key) and s[key]["n"]]
        if not points:
            continue
        xs = [t for t, _ in points]
        rates = [100 * r["trained_rate"] for _, r in points]
        below = [100 * (r["difference"] - r["ci_low"]) for _, r in points]
        above = [100 * (r["ci_high"] - r["difference"]) for _, r in points]
        base = 100 * points[0][1]["base_rate"]
        adherence_ax.errorbar(xs, rates, yerr=[below, above], linestyle=style, marker="o", color=color, capsize=3,
                              label=f"{label} (base {base:.0f}%)")
    adherence_ax.set_ylim(0, 100)
    adherence_ax.set_title("adherence on held-out queries (%)")
    guard_ax.plot(iterations, [s["base_nll"] for s in scores], marker="o", color=COLORS[0], label="base NLL / token")
    guard_ax.set_title("coherence guards")
    twin = guard_ax.twinx()
    twin.plot(iterations, [s["repetition"] for s in scores], marker="s", linestyle="--", color=COLORS[1],
              label="repetition rate (right)")
    guard_ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    for ax in axes:
        _iteration_axis(ax, iterations)
    mi_ax.legend(fontsize=8)
    adherence_ax.legend(fontsize=7)
    return _save(fig, path)
