"""Keep the terminal readable: the trainer's per-step metrics go to the run's log file, progress bars stay."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from transformers import ProgressCallback

STEPS = "sami.training.steps"
"""The logger of the per-step metrics: written to the log file only, never to the terminal."""
step_logger = logging.getLogger(STEPS)


class FileLoggedProgress(ProgressCallback):
    """Progress bars as usual; each logged metrics dict goes to the log file instead of the terminal."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            logs = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            step_logger.info("step %d: %s", state.global_step, logs)


@contextlib.contextmanager
def log_to_file(path: str | Path) -> Iterator[None]:
    """While inside, append sami's INFO lines, transformers' warnings and the per-step metrics to ``path``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("sami", "transformers", STEPS)]
    step_logger.propagate = False
    step_logger.setLevel(logging.INFO)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
