"""The SAMI recipe: principles -> constitutions -> (generate -> train -> evaluate) x T.

This file composes the components in the order of the paper's method. For t = 1..T it generates data
with the model of iteration t-1 (the base at t = 1) on this iteration's queries, trains from the
base model (or, optionally, from t-1) for a number of optimiser steps that grows with t, saves a
Hugging Face checkpoint, and measures the InfoNCE bound on I(y; c | x) and the mean response
length on held-out queries. Iteration 0 is the base model.

Everything lands in one run folder::

    runs/<name>/
      config.yaml                    the resolved configuration
      principles.yaml                the principles (written or copied)
      constitutions.jsonl            every query's constitutions (train pool and held-out)
      state.json                     finished stages: --resume continues from here
      metrics.jsonl                  one line per iteration: MI bound, response length, data counts
      iter_<t>/generations.jsonl     training data of iteration t (with its filter report)
      iter_<t>/trainer/              Trainer checkpoints (resume inside training)
      iter_<t>/checkpoint/           the model of iteration t (plain HF format)
      iter_<t>/eval_generations.jsonl  held-out responses of the model of iteration t
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sami.config.args import ConstitutionArgs, GenerationArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.constitutions import build_sampler, query_rng
from sami.data import load_queries
from sami.generation import FilterConfig, Generator, generate_dataset, kept_records, read_records, resolve_template
from sami.models import load_for_training
from sami.principles import PrincipleSet, load_principles, save_principles
from sami.training import SAMIConfig, SAMITrainer
from sami.training.trainer import evaluate_sami

logger = logging.getLogger(__name__)

EVAL_FILTERS = FilterConfig(placeholders=(), drop_identical=False, drop_truncated="none")
"""Held-out responses are generated greedily (the paper's evaluation), so they differ only through the
constitution, and scored as generated: only empty responses (no log-probability) are dropped."""


@dataclass
class IterationArgs:
    run_dir: str = field(default="runs/sami", metadata={"help": "The run folder (created; reused with --resume)."})
    iterations: int = field(default=3, metadata={"help": "T, SAMI iterations (paper: 3)."})
    initial_steps: int = field(default=2, metadata={"help": "Optimiser steps at t = 1 (paper: 2 steps of 128 queries)."})
    steps_growth: int = field(default=2, metadata={"help": "Extra steps per iteration (paper: 2, giving 2, 4, 6)."})
    continue_from_previous: bool = field(
        default=False, metadata={"help": "Train iteration t from t-1's weights instead of the base (paper: base)."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted run in --run_dir."})

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.initial_steps < 1 or self.steps_growth < 0:
            raise ValueError("need iterations >= 1, initial_steps >= 1 and steps_growth >= 0")

    def steps(self, t: int) -> int:
        return self.initial_steps + self.steps_growth * (t - 1)


class RunState:
    """The finished stages of a run, persisted after each one (atomic rename)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.done: list[str] = json.loads(self.path.read_text())["done"] if self.path.exists() else []

    def __contains__(self, stage: str) -> bool:
        return stage in self.done

    def mark(self, stage: str) -> None:
        self.done.append(stage)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"done": self.done}, indent=1) + "\n")
        partial.replace(self.path)


class Pipeline:
    """Runs (and resumes) one SAMI experiment; see the module docstring."""

    def __init__(
        self,
        model_args: ModelArgs,
        principle_args: PrincipleArgs,
        query_args: QueryArgs,
        constitution_args: ConstitutionArgs,
        generation_args: GenerationArgs,
        iteration_args: IterationArgs,
        training_args: SAMIConfig,
    ):
        self.model_args, self.principle_args, self.query_args = model_args, principle_args, query_args
        self.constitution_args, self.generation_args = constitution_args, generation_args
        self.iteration_args, self.training_args = iteration_args, training_args
        self.run_dir = Path(iteration_args.run_dir)
        self.seed = training_args.seed
        self._generator: Generator | None = None  # created at the first generation, kept for the whole run
        validate_config(principle_args, query_args, generation_args)

    # ------------------------------------------------------------------------------------ set-up

    def _resolved_config(self) -> dict:
        groups = [self.model_args, self.principle_args, self.query_args, self.constitution_args, self.generation_args]
        config = {k: v for g in groups for k, v in dataclasses.asdict(g).items()}
        config.update({k: v for k, v in dataclasses.asdict(self.iteration_args).items() if k != "resume"})
        defaults = SAMIConfig(output_dir="x").to_dict()
        config.update({k: v for k, v in self.training_args.to_dict().items() if defaults.get(k) != v and k != "output_dir"})
        return config

    def _prepare_run_dir(self) -> None:
        config_path = self.run_dir / "config.yaml"
        config = self._resolved_config()
        if config_path.exists():
            if not self.iteration_args.resume:
                raise FileExistsError(
                    f"{self.run_dir} already holds a run; pass --resume to continue it, or choose another --run_dir"
                )
            saved = yaml.safe_load(config_path.read_text())
            changed = {k for k in set(saved) | set(config) if saved.get(k) != config.get(k)}
            if changed:
                raise ValueError(
                    f"--resume with settings that differ from the run's config.yaml: {sorted(changed)}; "
                    "resume with the same settings, or start a new --run_dir"
                )
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _principles(self) -> PrincipleSet:
        path = self.run_dir / "principles.yaml"
        if path.exists():
            return load_principles(path)
        from sami.scripts.principles import obtain_principles

        principle_set = obtain_principles(self.principle_args, self.seed)
        save_principles(principle_set, path)
        return principle_set

    # ------------------------------------------------------------------------------------ stages

    def run(self) -> list[dict]:
        """Run every unfinished stage; return the metrics of iterations 0..T."""
        self._prepare_run_dir()
        state = RunState(self.run_dir)
        principle_set = self._principles()
        for principle in principle_set:
            logger.info("principle %s: + %s | - %s", principle.name, principle.definition, principle.antithesis)
        c_args = self.constitution_args
        train_sampler = build_sampler(
            c_args.scheme, principle_set, c_args.num_constitutions, "train", c_args.principles_per_constitution
        )
        q = self.query_args
        pool = load_queries(q.queries, "train", column=q.query_column, limit=q.max_train_queries, seed=self.seed, data_path=q.query_data_path)
        held_out = load_queries(q.queries, "eval", column=q.query_column, limit=q.max_eval_queries, seed=self.seed, data_path=q.query_data_path)
        self._write_constitutions(pool + held_out, train_sampler)

        for t in range(0, self.iteration_args.iterations + 1):
            iteration_dir = self.run_dir / f"iter_{t}"
            iteration_dir.mkdir(exist_ok=True)
            if t > 0:
                generator = self.model_args.model if t == 1 else str(self._checkpoint(t - 1))
                queries = self._iteration_queries(pool, t)
                if f"generate_{t}" not in state:
                    self._generate(generator, queries, train_sampler, iteration_dir / "generations.jsonl", self.generation_args.filters())
                    state.mark(f"generate_{t}")
                if f"train_{t}" not in state:
                    start = self.model_args.model
                    if self.iteration_args.continue_from_previous and t > 1:
                        start = str(self._checkpoint(t - 1))
                    self._train(start, iteration_dir, self.iteration_args.steps(t))
                    state.mark(f"train_{t}")
            if f"evaluate_{t}" not in state:
                model_spec = self.model_args.model if t == 0 else str(self._checkpoint(t))
                metrics = self._evaluate(t, model_spec, held_out, train_sampler, iteration_dir)
                with (self.run_dir / "metrics.jsonl").open("a") as handle:
                    handle.write(json.dumps(metrics) + "\n")
                state.mark(f"evaluate_{t}")
        return read_metrics(self.run_dir)

    def _checkpoint(self, t: int) -> Path:
        return self.run_dir / f"iter_{t}" / "checkpoint"

    def _iteration_queries(self, pool: list, t: int) -> list:
        """The next ``steps(t) * global batch`` queries of a seeded shuffle of the pool (wrapping around)."""
        args = self.training_args
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        order = list(pool)
        random.Random(f"sami-queries:{self.seed}").shuffle(order)
        start = sum(self.iteration_args.steps(s) * batch for s in range(1, t))
        count = self.iteration_args.steps(t) * batch
        if count > len(order):
            logger.warning("iteration %d needs %d queries but the pool has %d; some repeat", t, count, len(order))
        return [order[(start + i) % len(order)] for i in range(count)]

    def _write_constitutions(self, queries: list, sampler) -> None:
        path = self.run_dir / "constitutions.jsonl"
        if path.exists():
            return
        with path.open("w") as handle:
            for query in queries:
                constitutions = sampler.sample(query_rng(self.seed, query.id))
                handle.write(json.dumps({"query_id": query.id, "constitutions": [c.to_dict() for c in constitutions]}) + "\n")

    def _generate(
        self, model_spec: str, queries: list, sampler, output: Path, filters: FilterConfig, greedy: bool = False
    ) -> None:
        """Generate with ``model_spec`` on the run's one generator (a vLLM engine swaps weights, never restarts)."""
        g = self.generation_args
        if self._generator is None:
            self._generator = g.generator(model_spec, self.model_args, self.seed)
        generator = self._generator
        generator.load(model_spec)
        template = resolve_template(generator.tokenizer, self.query_args.task, g.prompt_kind, g.chain_of_thought)
        sampling = g.sampling(self.seed)
        if greedy:
            sampling = dataclasses.replace(sampling, temperature=0.0)
        report = generate_dataset(
            generator, queries, sampler, template, output,
            sampling=sampling, filters=filters, seed=self.seed, model_name=self._model_name(model_spec),
        )
        logger.info("%s: %s", output, report.summary())
        generator.release()  # the trainer gets the accelerator's memory

    def _model_name(self, model_spec: str) -> str:
        """How records name a model: the base spec, or the checkpoint relative to the run folder (movable runs)."""
        path = Path(model_spec)
        return str(path.relative_to(self.run_dir)) if path.is_relative_to(self.run_dir) else model_spec

    def _train(self, start_spec: str, iteration_dir: Path, steps: int) -> None:
        records = kept_records(iteration_dir / "generations.jsonl")
        if not records:
            raise RuntimeError(
                f"{iteration_dir / 'generations.jsonl'}: every record was filtered out (see its filter report); "
                "sample with --temperature > 0, raise --max_new_tokens, or relax --drop_truncated/--drop_identical"
            )
        args = dataclasses.replace(self.training_args, output_dir=str(iteration_dir / "trainer"), max_steps=steps)
        model, tokenizer = load_for_training(start_spec, args, dtype="float32")  # sharded: kept off the GPU
        trainer = SAMITrainer(model, args, train_dataset=records, processing_class=tokenizer)
        resume = any((iteration_dir / "trainer").glob("checkpoint-*"))
        trainer.train(resume_from_checkpoint=True if resume else None)
        trainer.save_model(str(self._checkpoint(int(iteration_dir.name.split("_")[1]))))
        del trainer, model
        gc.collect()

    def _evaluate(self, t: int, model_spec: str, held_out: list, sampler, iteration_dir: Path) -> dict:
        output = iteration_dir / "eval_generations.jsonl"
        self._generate(model_spec, held_out, sampler, output, EVAL_FILTERS, greedy=True)
        everything = read_records(output)
        records = [r for r in everything if r.get("dropped") is None]
        lengths = [n for r in everything for n in r["response_tokens"]]
        metrics: dict = {"iteration": t, "model": model_spec, "eval_queries": len(everything), "eval_scored": len(records)}
        if records:
            args = dataclasses.replace(self.training_args, output_dir=str(iteration_dir / "eval"))
            scores = evaluate_sami(model_spec, records, args)
            for key in ("mi/bound", "mi/bound_rows", "mi/bound_cols", "accuracy/rows", "accuracy/cols", "logps/margin", "loss"):
                if f"eval_{key}" in scores:
                    metrics[key.replace("/", "_")] = scores[f"eval_{key}"]
        metrics["response_length"] = sum(lengths) / max(1, len(lengths))
        metrics["identical_pairs"] = sum(len({y.strip() for y in r["responses"]}) == 1 for r in everything) / max(
            1, len(everything)
        )
        if t > 0:
            generated = read_records(iteration_dir / "generations.jsonl")
            metrics["train_queries"] = len(generated)
            metrics["train_kept"] = sum(r.get("dropped") is None for r in generated)
            metrics["train_steps"] = self.iteration_args.steps(t)
        logger.info("iteration %d: %s", t, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        return metrics


QUERY_TASKS = {"dialogue": "dialogue", "hh-rlhf": "dialogue", "summarisation": "summarisation",
               "summarization": "summarisation", "tldr": "summarisation"}


def validate_config(principle_args: PrincipleArgs, query_args: QueryArgs, generation_args: GenerationArgs) -> None:
    """Refuse settings that contradict each other, before any work is done."""
    if not principle_args.principles and not principle_args.task_description:
        raise ValueError("set --principles (a file or built-in name) or --task_description for the principle writer")
    expected = QUERY_TASKS.get(query_args.queries.split(":")[0])
    if expected is not None and query_args.task != expected:
        raise ValueError(
            f"--queries {query_args.queries} holds {expected} queries but --task is {query_args.task}; "
            f"set --task {expected}"
        )
    if generation_args.chain_of_thought and generation_args.max_new_tokens < 200:
        raise ValueError(
            f"--chain_of_thought needs room to reason and answer; max_new_tokens={generation_args.max_new_tokens} "
            "is too small (paper: 800)"
        )


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def format_table(metrics: list[dict]) -> str:
    """The per-iteration table ``sami run`` prints (iteration 0 is the base model)."""
    rows = ["| iteration | MI bound (nats) | rows | cols | accuracy | identical pairs | response length (tokens) "
            "| train data kept |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in metrics:
        kept = f"{m['train_kept']}/{m['train_queries']}" if "train_queries" in m else "-"
        accuracy = (m.get("accuracy_rows", float("nan")) + m.get("accuracy_cols", float("nan"))) / 2
        rows.append(
            f"| {m['iteration']} | {m.get('mi_bound', float('nan')):.4f} | {m.get('mi_bound_rows', float('nan')):.4f} | "
            f"{m.get('mi_bound_cols', float('nan')):.4f} | {accuracy:.3f} | {m.get('identical_pairs', float('nan')):.2f} "
            f"| {m['response_length']:.1f} | {kept} |"
        )
    return "\n".join(rows)
