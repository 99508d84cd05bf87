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

import torch
from transformers import ProgressCallback

from sami.config.args import ConstitutionArgs, GenerationArgs, IterationArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.config.evaluation import EvaluationArgs, JudgeArgs
from sami.constitutions import ConstitutionSampler, build_sampler, query_rng
from sami.data import load_queries, task_of
from sami.errors import ConfigError, SamiError
from sami.evaluation.effect import iteration_adherence
from sami.evaluation.protocol import evaluate_run, verifiable_principles
from sami.evaluation.verifiable import VerifiablePrinciple
from sami.generation import EVAL_FILTERS, Generator, generate_dataset, kept_records, resolve_backend, resolve_template
from sami.jsonl import read_jsonl, write_jsonl
from sami.models import load_for_training
from sami.principles import PrincipleSet, load_principles, obtain_principles, save_principles
from sami.records import read_generations
from sami.run_folder import RunFolder
from sami.tracking import IterationLogger, iteration_run, judgement_values, metric_values
from sami.training import SAMIConfig, SAMITrainer
from sami.training.progress import FileLoggedProgress, log_to_file, step_logger
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
        self.verifiable: list[VerifiablePrinciple] | None = None  # the principles' checkers, when all have one
        self.iteration_logger = IterationLogger.for_run(training_args, self.run_folder.tracker_logs)
        validate_config(principle_args, query_args, generation_args)
        quantization = model_args.options().quantization
        if quantization and resolve_backend(generation_args.generation_backend) == "vllm":
            raise ConfigError(f"{quantization} weights are for training (QLoRA); vLLM generates from the checkpoints "
                              "sami saves: set --generation_backend hf, or drop --load_in_4bit/--load_in_8bit")
        if principle_args.principles:  # the constitutions fail here, not after `run` wrote config.yaml
            c = constitution_args
            build_sampler(c.scheme, load_principles(principle_args.principles), c.num_constitutions, "train",
                          c.principles_per_constitution)

    # ------------------------------------------------------------------------------------ the method

    def run(self) -> list[dict]:
        """Run every unfinished stage; return the metrics of iterations 0..T.

        The log (every INFO line and the trainer's per-step metrics) goes to the run folder's ``run.log``.
        """
        self.run_folder.start(self._resolved_config(), self.iteration_args.resume,
                              main_process=self.training_args.process_index == 0)
        try:
            with log_to_file(self.run_folder.log_path):
                return self._run()
        finally:
            self.run_folder.release()  # a library caller (a notebook) frees the folder without exiting

    def _run(self) -> list[dict]:
        principle_set = self._principles()
        self.verifiable = verifiable_principles(principle_set)
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
        self._generate(self.model_of(t - 1), queries, sampler, t, training=True)

    def _train(self, t: int) -> None:
        """Train from the base (or from t-1) on iteration t's kept records; save the model of iteration t."""
        iteration = self.run_folder.iteration(t)
        records = kept_records(iteration.generations)
        if not records:
            raise NoTrainingData(
                f"{iteration.generations}: every record was filtered out (see its filter report); "
                "sample with --temperature > 0, raise --max_new_tokens, or relax --drop_truncated/--drop_identical"
            )
        start = self.model_of(t - 1) if self.iteration_args.continue_from_previous else self.model_args.model
        with iteration_run(self.training_args, t, self.run_folder.tracker_logs) as tracked:  # a tracker run per t
            args = dataclasses.replace(
                tracked, output_dir=str(iteration.trainer_dir), max_steps=self.iteration_args.steps(t)
            )
            model, tokenizer = self._load(start, args)
            trainer = SAMITrainer(model, args, train_dataset=records, processing_class=tokenizer)
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(FileLoggedProgress)
            iteration.clean_orphans()  # what a killed save left: temporary weight files
            checkpoint = iteration.resumable_trainer_checkpoint()  # torn Trainer checkpoints are deleted
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            trainer.save_model(str(iteration.checkpoint))
            del trainer, model
        gc.collect()

    def _evaluate(self, t: int, held_out: list, sampler: ConstitutionSampler) -> None:
        """Greedy held-out responses of the model of iteration t, their SAMI metrics and lengths."""
        iteration = self.run_folder.iteration(t)
        model_spec = self.model_of(t)
        self._generate(model_spec, held_out, sampler, t, training=False)
        generations = read_generations(iteration.eval_generations)  # read once: metrics and adherence
        everything = [g.to_dict() for g in generations]
        records = [r for r in everything if r.get("dropped") is None]
        lengths = [n for r in everything for n in r["response_tokens"]]
        metrics: dict = {
            "iteration": t, "model": self.run_folder.relative(model_spec), "eval_queries": len(everything),
            "eval_scored": len(records),
        }
        if records:
            args = dataclasses.replace(  # pinned memory only helps (and only exists) with an accelerator
                self.training_args, output_dir=str(iteration.trainer_dir),
                dataloader_pin_memory=self.training_args.dataloader_pin_memory and torch.cuda.is_available(),
            )
            model, tokenizer = self._load(model_spec, args)
            scores = evaluate_sami(model, records, args, tokenizer=tokenizer)
            del model
            metrics.update({key: scores[f"eval_{key}"] for key in EVAL_METRICS if f"eval_{key}" in scores})
        metrics["response_length"] = sum(lengths) / max(1, len(lengths))
        if self.verifiable is not None:
            metrics.update(iteration_adherence(generations, self.verifiable))
        metrics["identical_pairs"] = sum(len({y.strip() for y in r["responses"]}) == 1 for r in everything) / max(
            1, len(everything)
        )
        if t > 0:
            generated = read_jsonl(iteration.generations, what="generations file")
            metrics["train_queries"] = len(generated)
            metrics["train_kept"] = sum(r.get("dropped") is None for r in generated)
            metrics["train_steps"] = self.iteration_args.steps(t)
        step_logger.info("iteration %d: %s", t, metrics)
        adherence = ""
        if {"adherence/affirmed", "adherence/antithesis"} <= metrics.keys():
            adherence = (f", adherence {100 * metrics['adherence/affirmed']:.0f}% affirmed / "
                         f"{100 * metrics['adherence/antithesis']:.0f}% antithesis")
        logger.info("iteration %d: held-out MI bound %.4f nats, %.0f tokens per response%s",
                    t, metrics.get("mi/bound", float("nan")), metrics["response_length"], adherence)
        self.run_folder.append_metrics(metrics)
        self.iteration_logger.log(t, metric_values(metrics))

    def _judge(self, t: int) -> None:
        """Iteration t against the base model on the run's held-out responses (the evaluation protocol)."""
        eval_args = EvaluationArgs(seed=self.seed, only_iterations=[t])
        evaluate_run(
            self.run_folder, eval_args, self.judge_args, self.generation_args, self.query_args,
            self.constitution_args, self.principle_args, self.model_args,
        )
        self.iteration_logger.log(t, judgement_values(self.run_folder.iteration(t)))

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
        config.update({k: v for k, v in self.training_args.to_dict().items() if defaults.get(k) != v and affects_results(k)})
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

    def _load(self, spec: str, args: SAMIConfig):
        """A model to train or score, with ``--dtype`` (default float32) and the loading options; off the
        accelerator when sharded (FSDP/ZeRO-3 place it when they prepare it)."""
        return load_for_training(spec, args, dtype=self.model_args.training_dtype, options=self.model_args.options())

    def model_of(self, t: int) -> str:
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
            self._generator = g.generator(model_spec, self.seed, self.model_args)
        generator = self._generator
        generator.load(model_spec)
        template = resolve_template(generator.tokenizer, self.query_args.task, g.prompt_kind, g.chain_of_thought)
        sampling = g.sampling(self.seed)
        if not training:
            sampling = dataclasses.replace(sampling, temperature=0.0)
        generate_dataset(
            generator, queries, sampler, template, output,
            sampling=sampling, filters=g.filters() if training else EVAL_FILTERS, seed=self.seed,
            model_name=self.run_folder.relative(model_spec),
        )
        generator.release()  # the trainer gets the accelerator's memory


def affects_results(training_key: str) -> bool:
    """Whether a trainer setting belongs in ``config.yaml`` (compared on ``--resume``): the run folder,
    trackers and Hub pushing change no result, so a resumed run may change them (and no token is written)."""
    return training_key != "output_dir" and not training_key.startswith(("hub_", "trackio_")) and training_key not in (
        "push_to_hub", "report_to", "run_name", "project", "logging_dir"
    )


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
    """The per-iteration table ``sami run`` prints (iteration 0 is the base model).

    With verifiable principles it adds the held-out adherence to the affirmed principles and to their
    antitheses, and the repetition rate (docs/effect.md).
    """
    nan = float("nan")
    verifiable = any("adherence/affirmed" in m for m in metrics)
    header = "| iteration | MI bound (nats) | rows | cols | accuracy | identical pairs | response length (tokens) |"
    rule = "|---:|---:|---:|---:|---:|---:|---:|"
    if verifiable:
        header += " adherence: affirmed | antithesis | repetition |"
        rule += "---:|---:|---:|"
    rows = [header + " train data kept |", rule + "---|"]
    for m in metrics:
        kept = f"{m['train_kept']}/{m['train_queries']}" if "train_queries" in m else "-"
        accuracy = (m.get("accuracy/rows", nan) + m.get("accuracy/cols", nan)) / 2
        row = (
            f"| {m['iteration']} | {m.get('mi/bound', nan):.4f} | {m.get('mi/bound_rows', nan):.4f} | "
            f"{m.get('mi/bound_cols', nan):.4f} | {accuracy:.3f} | {m.get('identical_pairs', nan):.2f} "
            f"| {m['response_length']:.1f} |"
        )
        if verifiable:
            row += (f" {100 * m.get('adherence/affirmed', nan):.0f}% | {100 * m.get('adherence/antithesis', nan):.0f}% "
                    f"| {m.get('repetition', nan):.3f} |")
        rows.append(row + f" {kept} |")
    return "\n".join(rows)
