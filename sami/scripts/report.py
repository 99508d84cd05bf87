"""`sami report RUN_DIR`: the paper's figures and a Markdown report of a run, from its files alone.

    sami report runs/demo                 # writes runs/demo/report/report.md and its PNGs
    sami report runs/demo --out /tmp/rep  # somewhere else

Reads ``metrics.jsonl`` (MI lower bound and mean response length per iteration) and, when
``sami evaluate --run`` has been run, ``iter_<t>/verdicts*.jsonl`` (win rates, recomputed from
every judgement), ``summary*.json`` (judge counters) and ``adherence*.json`` (verifiable principles).
"""

from __future__ import annotations

import argparse
import sys

from sami.reporting.report import build_report


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sami report",
        description="Figures (MI bound, response length, win rates per iteration) and a Markdown report of a run.",
    )
    parser.add_argument("run_dir", help="the run directory `sami run` wrote")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    parser.add_argument("--examples", type=int, default=2, help="judged pairs shown per baseline")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        path = build_report(args.run_dir, args.out, max_examples=args.examples)
    except FileNotFoundError as error:
        print(f"sami report: error: {error}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
