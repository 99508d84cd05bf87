"""Trackers (``report_to``) for a ``sami run``: one run per iteration, grouped, and a summary run.

A SAMI run trains T models, each from the base (the paper's default), each for a few optimiser
steps. Concatenating them on one step axis would draw one long training curve that never
happened, so each iteration gets a tracker run of its own and the runs share a group
(docs/hub.md, "Trackers"):

- iteration t's trainer logs its per-step metrics (``train/loss``, ``train/mi/bound``, ...) to the run
  ``<run_name>-iter<t>``; its steps count 1..steps(t) and never restart, since nothing else logs there;
- the per-iteration metrics (held-out MI bound, response length, adherence, win rates) go to the
  summary run ``<run_name>`` as ``iteration/<metric>``, with the iteration as the step (TensorBoard,
  trackio) or as the x-axis metric ``iteration`` (wandb);
- the scoring trainers of :func:`sami.training.trainer.evaluate_sami` log nowhere.

Where they land: TensorBoard under ``LOGDIR/<run name>/`` (``LOGDIR``: ``$TENSORBOARD_LOGGING_DIR``,
else the folder the caller passes, the run's ``logs/``); wandb in ``$WANDB_PROJECT`` (default
``huggingface``), group ``$WANDB_RUN_GROUP`` (default ``<run_name>``); trackio in the project
``--project`` (trackio's callback takes no group: give each experiment a project of its own).
``<run_name>`` is ``--run_name``, else the run folder's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sami.jsonl import read_json

if TYPE_CHECKING:
    from sami.run_folder import IterationFolder
    from sami.training.config import SAMIConfig

logger = logging.getLogger(__name__)

SUMMARY_TRACKERS = ("tensorboard", "wandb", "trackio")
"""The trackers the per-iteration metrics go to; the per-step metrics go to every ``report_to`` integration."""
PREFIX = "iteration/"
"""The per-iteration metrics' prefix in the summary run (a section of its own in wandb and trackio)."""


def base_run_name(args: SAMIConfig) -> str:
    """The run's name in the trackers: ``--run_name``, else the run folder's (``output_dir``'s) name."""
    return args.run_name or Path(args.output_dir).resolve().name


def iteration_run_name(run_name: str, t: int) -> str:
    return f"{run_name}-iter{t}"


def logging_root(default: str | Path) -> Path:
    """Where TensorBoard runs go: ``$TENSORBOARD_LOGGING_DIR`` when set (as for ``transformers.Trainer``), else
    ``default``."""
    return Path(os.environ.get("TENSORBOARD_LOGGING_DIR") or default)


@contextlib.contextmanager
def iteration_run(
    args: SAMIConfig, t: int, logging_dir: str | Path, run_name: str | None = None
) -> Iterator[SAMIConfig]:
    """Iteration t's trainer arguments, inside that iteration's own tracker run.

    Yields ``args`` with ``run_name="<run_name>-iter<t>"`` and ``push_to_hub=False`` (a run pushes its final
    model once, :func:`sami.hub.push_run_model`). A trainer built inside writes TensorBoard events to
    ``logging_root(logging_dir)/<run_name>-iter<t>``; with wandb, the run ``<run_name>-iter<t>`` of the group
    ``<run_name>`` is opened here (the Trainer's callback logs into an open run) and finished on exit, since
    ``transformers`` leaves it open and the next iteration would log into it with its steps restarting.
    """
    run_name = run_name or base_run_name(args)
    name = iteration_run_name(run_name, t)
    tracked = dataclasses.replace(args, run_name=name, push_to_hub=False)
    saved = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logging_root(logging_dir) / name)  # read by TensorBoardCallback()
    wandb = _start_wandb_run(name, run_name) if "wandb" in tracked.report_to else None
    failed = False
    try:
        yield tracked
    except BaseException:
        failed = True
        raise
    finally:
        if saved is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = saved
        if wandb is not None:
            wandb.finish(exit_code=1 if failed else 0)


def _start_wandb_run(name: str, group: str):
    """Open the wandb run ``name`` in the group ``$WANDB_RUN_GROUP`` or ``group`` (main process); the wandb run."""
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return None
    import wandb

    if wandb.run is not None:
        wandb.finish()
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "huggingface"), name=name,
                      group=os.environ.get("WANDB_RUN_GROUP") or group)


# ---------------------------------------------------------------------------------- per-iteration metrics


def metric_values(record: Mapping) -> dict[str, float]:
    """The numbers of a ``metrics.jsonl`` record (``mi/bound``, ``response_length``, ``train_kept``, ...), without
    ``iteration`` itself."""
    return {key: float(value) for key, value in record.items() if key != "iteration" and _is_number(value)}


def judgement_values(iteration: IterationFolder) -> dict[str, float]:
    """What ``sami evaluate`` wrote into ``iter_<t>/``: ``win_rate/<baseline>/{raw,balanced,lc}`` from the
    summaries and ``adherence/<principle>/{affirmed,antithesis}`` (the trained model's rate) from the adherence
    files."""
    values: dict[str, float] = {}
    for path in iteration.summary_files():
        summary = read_json(path, what="summary file")
        baseline = summary.get("baseline") or path.stem.removeprefix("summary_vs_")
        for kind in ("raw", "balanced", "lc"):
            estimate = (summary.get(kind) or {}).get("estimate")
            if _is_number(estimate):
                values[f"win_rate/{baseline}/{kind}"] = float(estimate)
    for path in iteration.adherence_files():
        for row in read_json(path, what="adherence file").get("rows", []):
            if _is_number(row.get("trained_rate")):
                stance = "affirmed" if row.get("affirmed", True) else "antithesis"
                values[f"adherence/{row['principle']}/{stance}"] = float(row["trained_rate"])
    return values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class IterationLogger:
    """Logs per-iteration metrics to the summary run ``run_name`` of each ``report_to`` tracker that takes them.

    Each :meth:`log` opens the summary run (resuming it), logs and closes it, so it never overlaps the
    iterations' own runs and survives ``--resume``. Built on ``accelerate.tracking``'s tracker classes.

    Args:
        report_to: the trainer's ``report_to`` (a name or a list; ``"none"`` or empty: log nowhere; ``"all"``: the
            installed trackers).
        logging_dir: the TensorBoard root (see :func:`logging_root`); the summary run is ``<root>/<run_name>``.
        run_name: the summary run's name (:func:`base_run_name`), also the group of the iterations' runs.
        project: the trackio project (``TrainingArguments.project``).
    """

    def __init__(self, report_to: str | Iterable[str] | None, logging_dir: str | Path, run_name: str,
                 project: str = "huggingface"):
        names = [report_to] if isinstance(report_to, str) else list(report_to or [])
        if "all" in names:  # as TrainingArguments: every installed integration
            names = [name for name in SUMMARY_TRACKERS if importlib.util.find_spec(name) is not None]
        names = [name for name in names if name != "none"]
        self.trackers = [name for name in names if name in SUMMARY_TRACKERS]
        skipped = sorted(set(names) - set(self.trackers))
        if skipped:
            logger.warning("per-iteration metrics go to %s only, not to %s (their per-step metrics still do)",
                           ", ".join(SUMMARY_TRACKERS), ", ".join(skipped))
        self.root = logging_root(logging_dir)
        self.run_name = run_name
        self.project = project

    @classmethod
    def for_run(cls, args: SAMIConfig, logging_dir: str | Path) -> IterationLogger:
        """The summary logger of a ``sami run`` whose trainer arguments are ``args``."""
        return cls(args.report_to, logging_dir, base_run_name(args), project=args.project)

    def log(self, t: int, values: Mapping[str, float]) -> None:
        """Log ``values`` as ``iteration/<key>`` at iteration ``t`` (main process only)."""
        from accelerate import PartialState

        values = {PREFIX + key: float(value) for key, value in values.items() if _is_number(value)}
        if not values or not self.trackers or not PartialState().is_main_process:
            return
        for name in self.trackers:
            tracker = self._tracker(name)
            tracker.start()
            try:
                if name == "wandb":  # the x-axis of iteration/* is the logged `iteration`, never wandb's own step
                    tracker.tracker.define_metric("iteration")
                    tracker.tracker.define_metric(PREFIX + "*", step_metric="iteration")
                    tracker.log({**values, "iteration": t})
                else:
                    tracker.log(values, step=t)
            finally:
                tracker.finish()

    def _tracker(self, name: str):
        from accelerate.tracking import TensorBoardTracker, TrackioTracker, WandBTracker

        if name == "tensorboard":
            return TensorBoardTracker(self.run_name, self.root)
        if name == "wandb":
            return WandBTracker(
                os.environ.get("WANDB_PROJECT", "huggingface"),
                name=self.run_name,
                group=os.environ.get("WANDB_RUN_GROUP") or self.run_name,
                id=self._wandb_id(),
                resume="allow",
            )
        return TrackioTracker(self.project, name=self.run_name, resume="allow")

    def _wandb_id(self) -> str:
        """The summary run's wandb id, kept beside its TensorBoard events so that ``--resume`` continues it."""
        path = self.root / self.run_name / "wandb_run_id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:16], encoding="utf-8")
        return path.read_text(encoding="utf-8").strip()
