"""The SAMI recipe: principles -> constitutions -> (generate -> train -> evaluate) x T.

This file composes the components in the order of the paper's method (docs/pipeline.md). For
t = 1..T it generates data with the model of iteration t-1 (the base at t = 1) on this
iteration's queries, trains from the base model (or, optionally, from t-1) for a number of
optimiser steps that grows with t, saves a Hugging Face checkpoint, and measures the InfoNCE
bound on I(y; c | x) and the mean response length on held-out queries. Iteration 0 is the base
model.

Everything lands in one run folder, the trainer's ``--output_dir``; :class:`sami.run_folder.RunFolder`
owns its layout, its config check on ``--resume``, the finished stages and ``metrics.jsonl``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import random
from collections.abc import Callable

from sami.config.args import ConstitutionArgs, GenerationArgs, IterationArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.config.evaluation import EvaluationArgs, JudgeArgs
from sami.constitutions import ConstitutionSampler, build_sampler, query_rng
from sami.data import load_queries, task_of
from sami.errors import ConfigError, SamiError
from sami.generation import EVAL_FILTERS, Generator, generate_dataset, kept_records, resolve_template
from sami.jsonl import read_jsonl, write_jsonl
from sami.models import load_for_training
from sami.principles import PrincipleSet, load_principles, obtain_principles, save_principles
from sami.run_folder import RunFolder
from sami.training import SAMIConfig, SAMITrainer
from sami.training.trainer import evaluate_sami

logger = logging.getLogger(__name__)

EVAL_METRICS = ("mi/bound", "mi/bound_rows", "mi/bound_cols", "accuracy/rows", "accuracy/cols", "logps/margin", "loss")
"""The trainer's metrics (without their ``eval_`` prefix) that ``metrics.jsonl`` keeps per iteration."""


class NoTrainingData(SamiError, RuntimeError):
    """The generation filters dropped every record of an iteration."""


class Pipeline:
    """Runs (and resumes) one SAMI experiment in the run folder ``training_args.output_dir``."""

    def __init__(
        self,
        model_args: ModelArgs,
        principle_args: PrincipleArgs,
        query_args: QueryArgs,
        constitution_args: ConstitutionArgs,
        generation_args: GenerationArgs,
        iteration_args: IterationArgs,
        training_args: SAMIConfig,
        judge_args: JudgeArgs | None = None,
    ):
        self.model_args, self.principle_args, self.query_args = model_args, principle_args, query_args
        self.constitution_args, self.generation_args = constitution_args, generation_args
        self.iteration_args, self.training_args = iteration_args, training_args
        self.judge_args = judge_args if judge_args is not None else JudgeArgs()
        self.run_folder = RunFolder(training_args.output_dir)
        self.seed = training_args.seed
        self._generator: Generator | None = None  # created at the first generation, kept for the whole run
        validate_config(principle_args, query_args, generation_args)

    # ------------------------------------------------------------------------------------ the method

    def run(self) -> list[dict]:
        """Run every unfinished stage; return the metrics of iterations 0..T."""
        self.run_folder.start(self._resolved_config(), self.iteration_args.resume)
        principle_set = self._principles()
        for principle in principle_set:
            logger.info("principle %s: + %s | - %s", principle.name, principle.definition, principle.antithesis)
        c = self.constitution_args
        sampler = build_sampler(c.scheme, principle_set, c.num_constitutions, "train", c.principles_per_constitution)
        q = self.query_args
        pool = load_queries(q.queries, "train", column=q.query_column, limit=q.max_train_queries, seed=self.seed, data_path=q.query_data_path)
        held_out = load_queries(q.queries, "eval", column=q.query_column, limit=q.max_eval_queries, seed=self.seed, data_path=q.query_data_path)
        self._write_constitutions(pool + held_out, sampler)

        self._stage("evaluate_0", self._evaluate, 0, held_out, sampler)
        for t in range(1, self.iteration_args.iterations + 1):
            self._stage(f"generate_{t}", self._generate_training_data, t, pool, sampler)
            self._stage(f"train_{t}", self._train, t)
            self._stage(f"evaluate_{t}", self._evaluate, t, held_out, sampler)
            if self.iteration_args.judge_iterations:
                self._stage(f"judge_{t}", self._judge, t)
        return self.run_folder.read_metrics()

    def _stage(self, name: str, work: Callable[..., None], *args) -> None:
        """Run ``work(*args)`` unless stage ``name`` finished before (``--resume``); then record it as finished."""
        if name in self.run_folder.done_stages():
            return
        work(*args)
        self.run_folder.mark_done(name)

    def _generate_training_data(self, t: int, pool: list, sampler: ConstitutionSampler) -> None:
        """Iteration t's training data: the model of t-1 answers this iteration's queries."""
        queries = self._iteration_queries(pool, t)
        self._generate(self._model_of(t - 1), queries, sampler, t, training=True)

    def _train(self, t: int) -> None:
        """Train from the base (or from t-1) on iteration t's kept records; save the model of iteration t."""
        iteration = self.run_folder.iteration(t)
        records = kept_records(iteration.generations)
        if not records:
            raise NoTrainingData(
                f"{iteration.generations}: every record was filtered out (see its filter report); "
                "sample with --temperature > 0, raise --max_new_tokens, or relax --drop_truncated/--drop_identical"
            )
        start = self._model_of(t - 1) if self.iteration_args.continue_from_previous else self.model_args.model
        args = dataclasses.replace(
            self.training_args, output_dir=str(iteration.trainer_dir), max_steps=self.iteration_args.steps(t)
        )
        model, tokenizer = load_for_training(start, args, dtype="float32")  # sharded: kept off the GPU
        trainer = SAMITrainer(model, args, train_dataset=records, processing_class=tokenizer)
        resume = any(iteration.trainer_dir.glob("checkpoint-*"))
        trainer.train(resume_from_checkpoint=True if resume else None)
        trainer.save_model(str(iteration.checkpoint))
        del trainer, model
        gc.collect()

    def _evaluate(self, t: int, held_out: list, sampler: ConstitutionSampler) -> None:
        """Greedy held-out responses of the model of iteration t, their SAMI metrics and lengths."""
        iteration = self.run_folder.iteration(t)
        model_spec = self._model_of(t)
        self._generate(model_spec, held_out, sampler, t, training=False)
        everything = read_jsonl(iteration.eval_generations, what="held-out generations")
        records = [r for r in everything if r.get("dropped") is None]
        lengths = [n for r in everything for n in r["response_tokens"]]
        metrics: dict = {"iteration": t, "model": model_spec, "eval_queries": len(everything), "eval_scored": len(records)}
        if records:
            args = dataclasses.replace(self.training_args, output_dir=str(iteration.trainer_dir))
            scores = evaluate_sami(model_spec, records, args)
            metrics.update({key: scores[f"eval_{key}"] for key in EVAL_METRICS if f"eval_{key}" in scores})
        metrics["response_length"] = sum(lengths) / max(1, len(lengths))
        metrics["identical_pairs"] = sum(len({y.strip() for y in r["responses"]}) == 1 for r in everything) / max(
            1, len(everything)
        )
        if t > 0:
            generated = read_jsonl(iteration.generations, what="generations file")
            metrics["train_queries"] = len(generated)
            metrics["train_kept"] = sum(r.get("dropped") is None for r in generated)
            metrics["train_steps"] = self.iteration_args.steps(t)
        logger.info("iteration %d: %s", t, {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        self.run_folder.append_metrics(metrics)

    def _judge(self, t: int) -> None:
        """Iteration t against the base model on the run's held-out responses (the evaluation protocol)."""
        from sami.evaluation.protocol import evaluate_run

        eval_args = EvaluationArgs(seed=self.seed, only_iterations=[t])
        evaluate_run(
            self.run_folder, eval_args, self.judge_args, self.generation_args, self.query_args,
            self.constitution_args, self.principle_args,
        )

    # ------------------------------------------------------------------------------------ the parts

    def _resolved_config(self) -> dict:
        """The settings of the run (``config.yaml``): every group, the seed, and the trainer's non-default fields.

        The run folder itself (``output_dir``) is where the config lives, not a setting of the run.
        """
        groups = [self.model_args, self.principle_args, self.query_args, self.constitution_args, self.generation_args]
        if self.iteration_args.judge_iterations:
            groups.append(self.judge_args)
        config = {k: v for g in groups for k, v in dataclasses.asdict(g).items()}
        config.update({k: v for k, v in dataclasses.asdict(self.iteration_args).items() if k != "resume"})
        defaults = SAMIConfig(output_dir="x").to_dict()
        config.update({k: v for k, v in self.training_args.to_dict().items() if defaults.get(k) != v and k != "output_dir"})
        config["seed"] = self.seed  # always: `sami evaluate --run_dir` rebuilds the run's constitutions from it
        return config

    def _principles(self) -> PrincipleSet:
        """The run's principles: written (or copied) once, then read back on ``--resume``."""
        path = self.run_folder.principles
        if path.exists():
            return load_principles(path)
        principle_set = obtain_principles(self.principle_args, self.seed)
        save_principles(principle_set, path)
        return principle_set

    def _write_constitutions(self, queries: list, sampler: ConstitutionSampler) -> None:
        """Every query's constitutions, for the record (the sampler is seeded, so they never change)."""
        path = self.run_folder.constitutions
        if path.exists():
            return
        write_jsonl(
            ({"query_id": q.id, "constitutions": [c.to_dict() for c in sampler.sample(query_rng(self.seed, q.id))]}
             for q in queries),
            path,
        )

    def _model_of(self, t: int) -> str:
        """The model of iteration t: the base at t = 0, else iteration t's checkpoint."""
        return self.model_args.model if t == 0 else str(self.run_folder.iteration(t).checkpoint)

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

    def _generate(self, model_spec: str, queries: list, sampler: ConstitutionSampler, t: int, training: bool) -> None:
        """Iteration t's training data (sampled, filtered) or held-out responses (greedy, scored as generated).

        Every generation runs on the run's one generator (a vLLM engine swaps weights, never restarts).
        """
        g = self.generation_args
        iteration = self.run_folder.iteration(t)
        output = iteration.generations if training else iteration.eval_generations
        if self._generator is None:
            self._generator = g.generator(model_spec, self.seed)
        generator = self._generator
        generator.load(model_spec)
        template = resolve_template(generator.tokenizer, self.query_args.task, g.prompt_kind, g.chain_of_thought)
        sampling = g.sampling(self.seed)
        if not training:
            sampling = dataclasses.replace(sampling, temperature=0.0)
        report = generate_dataset(
            generator, queries, sampler, template, output,
            sampling=sampling, filters=g.filters() if training else EVAL_FILTERS, seed=self.seed,
            model_name=self.run_folder.relative(model_spec),
        )
        logger.info("%s: %s", output, report.summary())
        generator.release()  # the trainer gets the accelerator's memory


def validate_config(principle_args: PrincipleArgs, query_args: QueryArgs, generation_args: GenerationArgs) -> None:
    """Refuse settings that contradict each other, before any work is done."""
    if not principle_args.principles and not principle_args.task_description:
        raise ConfigError("set --principles (a file or built-in name) or --task_description for the principle writer")
    expected = task_of(query_args.queries)
    if expected is not None and query_args.task != expected:
        raise ConfigError(
            f"--queries {query_args.queries} holds {expected} queries but --task is {query_args.task}; "
            f"set --task {expected}"
        )
    if generation_args.chain_of_thought and generation_args.max_new_tokens < 200:
        raise ConfigError(
            f"--chain_of_thought needs room to reason and answer; max_new_tokens={generation_args.max_new_tokens} "
            "is too small (paper: 800)"
        )


def format_table(metrics: list[dict]) -> str:
    """The per-iteration table ``sami run`` prints (iteration 0 is the base model)."""
    nan = float("nan")
    header = ("| iteration | MI bound (nats) | rows | cols | accuracy | identical pairs | response length (tokens) "
              "| train data kept |")
    rows = [header, "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in metrics:
        kept = f"{m['train_kept']}/{m['train_queries']}" if "train_queries" in m else "-"
        accuracy = (m.get("accuracy/rows", nan) + m.get("accuracy/cols", nan)) / 2
        rows.append(
            f"| {m['iteration']} | {m.get('mi/bound', nan):.4f} | {m.get('mi/bound_rows', nan):.4f} | "
            f"{m.get('mi/bound_cols', nan):.4f} | {accuracy:.3f} | {m.get('identical_pairs', nan):.2f} "
            f"| {m['response_length']:.1f} | {kept} |"
        )
    return "\n".join(rows)
