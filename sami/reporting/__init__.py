"""Figures and a Markdown report of a SAMI run (``sami report --run_dir RUN_DIR``)."""

from sami.reporting.figures import plot_adherence, plot_mi_bound, plot_response_length, plot_win_rates
from sami.reporting.report import build_report, load_verdicts

__all__ = [
    "build_report",
    "load_verdicts",
    "plot_adherence",
    "plot_mi_bound",
    "plot_response_length",
    "plot_win_rates",
]
