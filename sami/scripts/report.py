"""The paper's figures and a Markdown report of a run, from its files alone.

    sami report --run_dir runs/demo                         # writes runs/demo/report/report.md and its PNGs
    sami report --run_dir runs/demo --output_dir /tmp/rep   # somewhere else

Reads ``metrics.jsonl`` (MI lower bound and mean response length per iteration) and, when
``sami evaluate --run_dir`` has been run, ``iter_<t>/verdicts_vs_*.jsonl`` (win rates, recomputed
from every judgement), ``summary_vs_*.json`` (judge counters) and ``adherence_vs_*.json``
(verifiable principles); docs/evaluation.md.
"""

from __future__ import annotations

from sami.config.commands import ReportArgs
from sami.config.parser import SamiParser
from sami.reporting import build_report


def make_parser() -> SamiParser:
    return SamiParser([ReportArgs], prog="sami report", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    (args,) = make_parser().parse_args_and_config(argv)
    path = build_report(args.run_dir, args.output_dir, max_examples=args.examples)
    print(f"report written to {path}")
    return 0
