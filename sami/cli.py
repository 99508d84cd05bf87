"""The ``sami`` command: one subcommand per pipeline stage, plus ``run`` for the whole loop.

    sami principles   write principles with an LM, or validate a hand-written file
    sami generate     constitution-conditioned responses (JSONL, resumable)
    sami train        SAMI fine-tuning on a generations file
    sami run          principles -> (generate -> train -> evaluate) x T, resumable
    sami evaluate     judge two models' responses; win rates with length control
    sami report       figures and a Markdown report of a run
    sami env          versions, devices and the embedded models' status, for a bug report

Every command takes --config FILE.yaml (or a shipped recipe name) and snake_case flags;
`sami <command> --help` lists them.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS = {
    "principles": "sami.scripts.principles",
    "generate": "sami.scripts.generate",
    "train": "sami.scripts.train",
    "run": "sami.scripts.run",
    "evaluate": "sami.scripts.evaluate",
    "report": "sami.scripts.report",
    "env": "sami.scripts.env",
}


def setup_logging() -> None:
    """sami's one logging set-up: INFO lines with a time stamp on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    from sami.errors import SamiError

    setup_logging()
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
        return module.main(argv[1:])
    except SamiError as error:
        message = " ".join(str(error).split())  # one line, whatever the message holds
        print(f"sami {argv[0]}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
