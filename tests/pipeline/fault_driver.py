"""Run ``sami run`` and SIGKILL it at one named point (the fault-injection tests start it as a subprocess).

    python tests/pipeline/fault_driver.py FAULT [sami run flags...]

FAULT is ``none`` or ``KIND:ARGS``; the process prints ``killed at FAULT`` on stderr and kills
itself with SIGKILL (no clean-up, no ``finally``), as ``kill -9`` would:

    after_stage:S             once stage S is recorded in state.json (a stage boundary)
    pause_after_stage:S:FILE  after stage S, print ``paused`` and wait until FILE exists (no kill)
    generation:T              after the first batch of iteration T's training data is committed
    training:T:N              as optimiser step N+1 of iteration T starts (checkpoint-N is complete)
    trainer_weights:T:N       while the Trainer writes checkpoint-N's weights (half a .tmp file, as safetensors)
    trainer_state:T:N         while the Trainer writes checkpoint-N's trainer_state.json (its last file)
    final_save:T              while iteration T's model is saved to iter_T/checkpoint (half a .tmp file)
    metrics:T                 once iteration T's metrics are appended, before its stage is recorded
    evaluation:T              as the SAMI metrics of iteration T's held-out responses are computed

Every fault wraps a real function of sami or transformers; nothing of this ships in the library.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def kill(fault: str) -> None:
    print(f"killed at {fault}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def half_written(folder: Path, data: bytes, name: str) -> None:
    """What a killed writer leaves: the first half of ``data`` in ``folder/name``."""
    (folder / name).write_bytes(data[: len(data) // 2])


def install(fault: str) -> None:
    """Wrap the function where ``fault`` strikes."""
    if fault == "none":
        return
    kind, *args = fault.split(":")
    t = args[0]

    if kind in ("after_stage", "pause_after_stage"):
        from sami.run_folder import RunFolder

        mark_done = RunFolder.mark_done

        def mark_done_then_fault(self, stage):
            mark_done(self, stage)
            if stage != args[0]:
                return
            if kind == "after_stage":
                kill(fault)
            print("paused", file=sys.stderr, flush=True)
            while not Path(args[1]).exists():
                time.sleep(0.05)

        RunFolder.mark_done = mark_done_then_fault

    elif kind == "generation":
        from sami.jsonl import JsonlAppender

        commit, written = JsonlAppender.commit, JsonlAppender.write

        def note_write(self, record):
            self.wrote = True
            written(self, record)

        def commit_then_kill(self):
            commit(self)
            if getattr(self, "wrote", False) and self.path.parent.name == f"iter_{t}" and self.path.name == "generations.jsonl":
                kill(fault)

        JsonlAppender.write, JsonlAppender.commit = note_write, commit_then_kill

    elif kind == "training":
        from sami.training import SAMITrainer

        training_step = SAMITrainer.training_step

        def step_or_kill(self, *step_args, **step_kwargs):
            if Path(self.args.output_dir).parent.name == f"iter_{t}" and self.state.global_step == int(args[1]):
                kill(fault)
            return training_step(self, *step_args, **step_kwargs)

        SAMITrainer.training_step = step_or_kill

    elif kind in ("trainer_weights", "final_save"):
        import safetensors.torch
        import transformers.modeling_utils

        save_file = transformers.modeling_utils.safe_save_file
        target = f"iter_{t}/trainer/checkpoint-{args[1]}" if kind == "trainer_weights" else f"iter_{t}/checkpoint"

        def save_or_tear(tensors, filename, metadata=None):
            folder = Path(filename).parent
            if folder.as_posix().endswith(target):
                half_written(folder, safetensors.torch.save(tensors, metadata=metadata), ".tmpKi11d")
                kill(fault)
            return save_file(tensors, filename, metadata=metadata)

        transformers.modeling_utils.safe_save_file = save_or_tear

    elif kind == "trainer_state":
        from transformers import TrainerState

        save_to_json = TrainerState.save_to_json

        def save_or_tear(self, json_path):
            path = Path(json_path)
            if path.parent.as_posix().endswith(f"iter_{t}/trainer/checkpoint-{args[1]}"):
                save_to_json(self, json_path)
                half_written(path.parent, path.read_bytes(), path.name)
                kill(fault)
            return save_to_json(self, json_path)

        TrainerState.save_to_json = save_or_tear

    elif kind == "metrics":
        from sami.run_folder import RunFolder

        append_metrics = RunFolder.append_metrics

        def append_then_kill(self, record):
            append_metrics(self, record)
            if record["iteration"] == int(t):
                kill(fault)

        RunFolder.append_metrics = append_then_kill

    elif kind == "evaluation":
        import sami.pipeline

        evaluate_sami = sami.pipeline.evaluate_sami

        def kill_or_evaluate(model_spec, records, args, *more, **options):
            if Path(args.output_dir).parent.name == f"iter_{t}":
                kill(fault)
            return evaluate_sami(model_spec, records, args, *more, **options)

        sami.pipeline.evaluate_sami = kill_or_evaluate

    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    install(sys.argv[1])
    from sami.cli import main

    sys.exit(main(["run", *sys.argv[2:]]))
