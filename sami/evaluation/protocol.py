"""The evaluation protocol: does a model follow its constitution better than a baseline?

The paper's evaluation (docs/evaluation.md), in five steps:

1. choose the judge: an API model, a local model, or none (verifiable principles only);
2. build the evaluation items: queries x constitutions, from the seeded samplers training uses;
3. generate the missing responses greedily through :func:`sami.generation.generate_dataset`, the
   generator and resume logic of ``sami generate`` (:class:`ResponseGenerator`);
4. judge every (query, constitution) pair (:func:`sami.evaluation.pairwise.compare`) and check the
   verifiable principles (:func:`sami.evaluation.verifiable.adherence_report`);
5. summarise (:func:`sami.evaluation.winrates.summarize`) and write ``verdicts_vs_<baseline>.jsonl``,
   ``summary_vs_<baseline>.json`` and ``adherence_vs_<baseline>.json`` (:meth:`Evaluator.compare`).

Entry points, each returning the summaries it wrote: :func:`compare_files` (two response files),
:func:`compare_models` (two models: generate, then judge) and :func:`evaluate_run` (every iteration
of a run against its base model, and a second baseline; ``sami run`` calls it as a stage).
:func:`evaluate` picks one from the flags.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sami.config.args import ConstitutionArgs, GenerationArgs, ModelLoadingArgs, PrincipleFileArgs, QueryArgs
from sami.config.evaluation import EvaluationArgs, JudgeArgs
from sami.constitutions import Constitution, ConstitutionSampler, build_sampler
from sami.data import Query, load_queries
from sami.errors import ConfigError
from sami.evaluation.api_judge import APIJudge, require_api_key
from sami.evaluation.judges import Judge
from sami.evaluation.pairwise import compare, comparisons_from_records
from sami.evaluation.templates import judge_template
from sami.evaluation.verifiable import VerifiablePrinciple, adherence_report, is_verifiable, verifiable_from_set
from sami.evaluation.winrates import summarize
from sami.generation.filters import EVAL_FILTERS
from sami.jsonl import write_json
from sami.models.embedded import DEFAULT_MODEL
from sami.principles import PrincipleSet, load_principles
from sami.records import GenerationRecord, ResponseRecord, read_generations, read_responses
from sami.run_folder import ITERATION_DIR, EvaluationFolder, IterationFolder, RunFolder, RunFolderError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- the judge


def make_judge(judge_args: JudgeArgs, task: str, cache_dir: Path, device: str) -> Judge | None:
    """The judge ``judge_args`` names (``None`` for ``--judge none``); its template defaults to the task's."""
    template = judge_args.judge_template or task
    if judge_args.judge == "api":
        return APIJudge(
            judge_args.judge_model,
            judge_args.judge_base_url,
            api_key_env=judge_args.judge_api_key_env,
            api_version=judge_args.judge_api_version,
            template=template,
            timeout=judge_args.judge_timeout,
            max_retries=judge_args.judge_retries,
            max_concurrency=judge_args.judge_concurrency,
            max_tokens=judge_args.judge_max_tokens,
            cache_dir=judge_args.judge_cache or cache_dir,
        )
    if judge_args.judge == "local":
        from sami.evaluation.local_judge import LocalJudge  # imports torch

        options, dtype = judge_args.judge_loading()
        return LocalJudge.from_spec(
            judge_args.judge_model or DEFAULT_MODEL, dtype=dtype, device=device, options=options, template=template,
            margin=judge_args.margin,
        )
    return None


def verifiable_principles(principle_set: PrincipleSet | None) -> list[VerifiablePrinciple] | None:
    """The principles with their checkers when every principle of the set has one, else ``None``."""
    if principle_set is None or not all(is_verifiable(p.name) for p in principle_set):
        return None
    return verifiable_from_set(principle_set)


@dataclass
class Side:
    """One side of a comparison: its name in the records and its responses."""

    name: str
    responses: list[ResponseRecord]


@dataclass
class Evaluator:
    """Compares sides with one judge under one principle set, and writes what it finds.

    Creating it checks, before any generation, that the evaluation can measure something; the judge
    itself starts with :meth:`start_judge`, once generation has freed the accelerator.
    """

    eval_args: EvaluationArgs
    judge_args: JudgeArgs
    principle_set: PrincipleSet | None
    settings: dict
    judge: Judge | None = field(default=None, init=False)
    verifiable: list[VerifiablePrinciple] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.verifiable = verifiable_principles(self.principle_set)
        if self.judge_args.judge_template:
            judge_template(self.judge_args.judge_template)  # a custom template lacking a field fails now
        if self.judge_args.judge == "api":
            if not self.judge_args.judge_model:
                raise ConfigError("--judge api needs --judge_model (e.g. gpt-4o-mini); or use --judge local")
            require_api_key(self.judge_args.judge_api_key_env)
        if self.judge_args.judge == "none" and self.verifiable is None:
            raise ConfigError(
                "--judge none leaves nothing to measure unless every principle is verifiable; "
                "give --principles verifiable (or another file of verifiable principles), or choose a judge"
            )

    def start_judge(self, task: str, cache_dir: Path, device: str) -> None:
        self.judge = make_judge(self.judge_args, task, cache_dir, device)

    def compare(self, candidate: Side, baseline: Side, folder: EvaluationFolder) -> dict:
        """Judge ``candidate`` against ``baseline`` and check the verifiable principles; write the
        verdicts, the adherence and the summary into ``folder``; return the summary."""
        e, j = self.eval_args, self.judge_args
        splits = {p.name: p.split for p in self.principle_set} if self.principle_set is not None else None
        comparisons, pairs = comparisons_from_records(
            candidate.responses, baseline.responses, intersect=e.intersect, splits=splits
        )
        summary: dict = {"candidate": candidate.name, "baseline": baseline.name, "pairs": pairs}
        if self.judge is not None:
            verdicts = compare(
                self.judge, comparisons, candidate=candidate.name, baseline=baseline.name, seed=e.seed,
                both_orders=j.both_orders, workers=j.workers, serial=True if j.serial else None,
                progress=not e.no_progress, max_unparsed_fraction=None if j.allow_unparsed else j.max_unparsed_fraction,
                out_path=folder.verdicts(baseline.name),
            )
            summary.update(summarize(verdicts, e.length_unit))
            summary["judge_stats"] = self.judge.stats()
        if self.verifiable is not None:
            rows = adherence_report(
                [r.to_dict() for r in baseline.responses], [r.to_dict() for r in candidate.responses], self.verifiable
            )
            adherence = {
                "base_name": baseline.name, "trained_name": candidate.name, "rows": [r.to_dict() for r in rows]
            }
            write_json(adherence, folder.adherence(baseline.name))
            summary["adherence"] = adherence["rows"]
        summary["settings"] = self.settings
        write_json(summary, folder.summary(baseline.name))
        return summary


# ---------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class FirstConstitution:
    """The first constitution a sampler gives each query (for fixed_pair/negations: all principles affirmed)."""

    sampler: ConstitutionSampler
    num_constitutions: int = 1

    def sample(self, rng) -> list[Constitution]:
        return self.sampler.sample(rng)[:1]


def flatten(records: Sequence[GenerationRecord], constitutions: str) -> list[ResponseRecord]:
    """The responses of generations records: under each query's ``"first"`` constitution, or ``"all"``."""
    count = 1 if constitutions == "first" else None
    return [response for record in records for response in record.response_records()[:count]]


class ResponseGenerator:
    """Greedy responses of several models to the same queries under the same constitutions.

    Each model's responses are a generations file that :func:`sami.generation.generate_dataset`
    writes (the generator and resume logic of ``sami generate``): a rerun generates only what is
    missing, and a file generated with other settings is refused, naming what differs. One
    generator serves every model (a vLLM engine swaps weights instead of restarting); ``loading``
    (``--dtype``, ``--attn_implementation``, ...) says how every model is loaded.
    """

    def __init__(
        self,
        queries: list[Query],
        principle_set: PrincipleSet | None,
        eval_args: EvaluationArgs,
        constitution_args: ConstitutionArgs,
        generation_args: GenerationArgs,
        task: str,
        loading: ModelLoadingArgs | None = None,
    ):
        self.queries, self.principle_set, self.task = queries, principle_set, task
        self.eval_args, self.constitution_args, self.generation_args = eval_args, constitution_args, generation_args
        self.loading = loading
        self._sampler: ConstitutionSampler | None = None
        self._generator = None

    @property
    def sampler(self) -> ConstitutionSampler:
        """The constitutions of each query, seeded as in training (``--principle_split`` principles)."""
        if self._sampler is None:
            if self.principle_set is None:
                raise ConfigError(
                    "generating responses needs principles: give --principles (a file or a built-in name)"
                )
            c = self.constitution_args
            sampler = build_sampler(
                c.scheme, self.principle_set, c.num_constitutions, self.eval_args.principle_split,
                c.principles_per_constitution,
            )
            self._sampler = FirstConstitution(sampler) if self.eval_args.constitutions == "first" else sampler
        return self._sampler

    def responses(self, spec: str, output: Path, model_name: str | None = None) -> list[ResponseRecord]:
        """``spec``'s responses, generated into ``output`` where missing.

        ``model_name`` names the model in the records and in their resume key (default: ``spec``).
        """
        from sami.generation import generate_dataset, resolve_template  # imports torch

        g, seed, sampler = self.generation_args, self.eval_args.seed, self.sampler
        if self._generator is None:
            self._generator = g.generator(spec, seed, self.loading)
        self._generator.load(spec)
        template = resolve_template(self._generator.tokenizer, self.task, g.prompt_kind, g.chain_of_thought)
        generate_dataset(
            self._generator, self.queries, sampler, template, output,
            sampling=dataclasses.replace(g.sampling(seed), temperature=0.0), filters=EVAL_FILTERS, seed=seed,
            model_name=model_name or spec, show_progress=not self.eval_args.no_progress,
        )
        self._generator.release()  # the judge (or, in `sami run`, the trainer) gets the accelerator's memory
        wanted = {query.id for query in self.queries}
        return flatten([r for r in read_generations(output) if r.query_id in wanted], "all")


def held_out_queries(query_args: QueryArgs, eval_args: EvaluationArgs) -> list[Query]:
    """The queries of ``--split`` (held out by default), at most ``--max_eval_queries`` (a seeded sample)."""
    q = query_args
    return load_queries(
        q.queries, eval_args.split, column=q.query_column, limit=q.max_eval_queries, seed=eval_args.seed,
        data_path=q.query_data_path,
    )


# ---------------------------------------------------------------------------------- entry points


def settings_of(*groups) -> dict:
    """Every setting of an evaluation, for its summary (groups that are None are left out)."""
    return {key: value for group in groups if group is not None for key, value in dataclasses.asdict(group).items()}


def model_name(spec: str) -> str:
    """How records name a model: a checkpoint inside ``iter_<t>/`` by its iteration, a .gguf by its stem,
    a folder or hub id by its last part."""
    path = Path(spec)
    if ITERATION_DIR.match(path.parent.name):
        return path.parent.name
    return path.stem if path.suffix == ".gguf" else path.name or spec


def compare_files(
    eval_args: EvaluationArgs,
    judge_args: JudgeArgs,
    generation_args: GenerationArgs,
    query_args: QueryArgs,
    principle_args: PrincipleFileArgs,
) -> list[dict]:
    """Judge ``--candidate_responses`` against ``--baseline_responses`` into ``--output_dir``."""
    principle_set = load_principles(principle_args.principles) if principle_args.principles else None
    evaluator = Evaluator(
        eval_args, judge_args, principle_set, settings_of(eval_args, judge_args, query_args, principle_args)
    )
    candidate = Side(
        eval_args.candidate_name or Path(eval_args.candidate_responses).stem,
        read_responses(eval_args.candidate_responses),
    )
    baseline = Side(
        eval_args.baseline_name or Path(eval_args.baseline_responses).stem, read_responses(eval_args.baseline_responses)
    )
    folder = EvaluationFolder(Path(eval_args.output_dir))
    evaluator.start_judge(query_args.task, folder.judge_cache, generation_args.device)
    return [evaluator.compare(candidate, baseline, folder)]


def compare_models(
    eval_args: EvaluationArgs,
    judge_args: JudgeArgs,
    generation_args: GenerationArgs,
    query_args: QueryArgs,
    constitution_args: ConstitutionArgs,
    principle_args: PrincipleFileArgs,
    loading: ModelLoadingArgs | None = None,
) -> list[dict]:
    """Generate ``--candidate``'s and ``--baseline``'s responses into ``--output_dir`` (the models loaded with
    ``loading``), then judge them."""
    principle_set = load_principles(principle_args.principles) if principle_args.principles else None
    groups = (eval_args, judge_args, generation_args, query_args, constitution_args, principle_args, loading)
    evaluator = Evaluator(eval_args, judge_args, principle_set, settings_of(*groups))
    folder = EvaluationFolder(Path(eval_args.output_dir))
    candidate_name = eval_args.candidate_name or model_name(eval_args.candidate)
    baseline_name = eval_args.baseline_name or model_name(eval_args.baseline)
    if baseline_name == candidate_name:
        baseline_name += "-baseline"
    responder = ResponseGenerator(
        held_out_queries(query_args, eval_args), principle_set, eval_args, constitution_args, generation_args,
        query_args.task, loading,
    )
    candidate = Side(candidate_name, responder.responses(eval_args.candidate, folder.responses(candidate_name)))
    baseline = Side(baseline_name, responder.responses(eval_args.baseline, folder.responses(baseline_name)))
    evaluator.start_judge(query_args.task, folder.judge_cache, generation_args.device)
    return [evaluator.compare(candidate, baseline, folder)]


def evaluate_run(
    run: RunFolder,
    eval_args: EvaluationArgs,
    judge_args: JudgeArgs,
    generation_args: GenerationArgs,
    query_args: QueryArgs,
    constitution_args: ConstitutionArgs,
    principle_args: PrincipleFileArgs,
    loading: ModelLoadingArgs | None = None,
) -> list[dict]:
    """Each iteration of ``run`` against its base model (and ``--second_baseline``), into ``iter_<t>/``.

    By default the held-out responses the run generated are judged as they are
    (``iter_<t>/eval_generations.jsonl``, ``iter_0`` being the base model), so the comparison uses
    exactly the run's held-out queries and constitutions. ``--regenerate`` (or a run without them)
    generates responses from ``iter_<t>/checkpoint`` and the base model (``--baseline``, else the
    run's ``model``), each model loaded with ``loading``. Baseline responses and the judge's cache go to
    ``RUN_DIR/eval/``. The principles are ``--principles``, else the run's ``principles.yaml``.
    """
    run.require()
    run.lock()  # no `sami run` may write here meanwhile (inside `sami run --judge_iterations` it holds the lock)
    if principle_args.principles:
        principle_set = load_principles(principle_args.principles)
    else:
        principle_set = load_principles(run.principles) if run.principles.exists() else None
    groups = (eval_args, judge_args, generation_args, query_args, constitution_args, principle_args, loading)
    evaluator = Evaluator(eval_args, judge_args, principle_set, settings_of(*groups))
    iterations = iterations_to_evaluate(run, eval_args.only_iterations)
    base = run.iteration(0)
    baselines_folder = run.baselines
    base_name = eval_args.baseline_name or "base"
    reuse = not eval_args.regenerate and base.eval_generations.exists()
    if reuse:
        logger.info("judging the run's held-out responses (%s); --regenerate generates new ones", base.eval_generations)
        base_generations = read_generations(base.eval_generations)
        source = f"file:{base.eval_generations}"
        queries = [Query(record.query_id, record.query, source) for record in base_generations]
    else:
        queries = held_out_queries(query_args, eval_args)
    responder = ResponseGenerator(
        queries, principle_set, eval_args, constitution_args, generation_args, query_args.task, loading
    )
    if reuse:
        base_responses = flatten(base_generations, eval_args.constitutions)
    else:
        base_spec = eval_args.baseline or run.read_config().get("model")
        if not base_spec:
            raise ConfigError(f"{run.config_path} names no `model`; give the run's base model with --baseline")
        base_responses = responder.responses(base_spec, baselines_folder.responses(base_name))
    baselines = [Side(base_name, base_responses)]
    if eval_args.second_baseline:
        name = eval_args.second_baseline_name
        baselines.append(Side(name, responder.responses(eval_args.second_baseline, baselines_folder.responses(name))))

    candidates = {}
    for t, folder in iterations.items():
        name = eval_args.candidate_name or f"sami-iter{t}"
        if reuse and folder.eval_generations.exists():
            candidates[t] = Side(name, flatten(read_generations(folder.eval_generations), eval_args.constitutions))
        elif folder.has_checkpoint:
            spec = str(folder.checkpoint)
            candidates[t] = Side(name, responder.responses(spec, folder.responses(name), run.relative(spec)))
        elif eval_args.regenerate:
            raise RunFolderError(
                f"{folder.checkpoint} not found: nothing to generate iteration {t}'s responses from; drop --regenerate "
                "to judge its eval_generations.jsonl as it is"
            )
        else:
            raise RunFolderError(
                f"iteration {t} has held-out responses but the base model's ({base.eval_generations}) are missing, "
                f"and there is no {folder.checkpoint} to generate from; both sides need the same kind of input: "
                "restore that file, or choose iterations with a checkpoint (--only_iterations)"
            )
    evaluator.start_judge(query_args.task, baselines_folder.judge_cache, generation_args.device)
    return [
        evaluator.compare(candidates[t], baseline, folder)
        for t, folder in iterations.items()
        for baseline in baselines
    ]


def iterations_to_evaluate(run: RunFolder, only: list[int] | None) -> dict[int, IterationFolder]:
    """The iterations t >= 1 with a checkpoint or held-out responses (only those in ``only``, if given)."""
    found = {
        t: folder for t, folder in run.iterations().items()
        if t >= 1 and (folder.has_checkpoint or folder.eval_generations.exists()) and (not only or t in only)
    }
    if not found:
        among = f" among --only_iterations {' '.join(map(str, only))}" if only else ""
        raise RunFolderError(
            f"{run.root} has no iteration{among} with a checkpoint or held-out responses "
            "(iter_<t>/checkpoint/, iter_<t>/eval_generations.jsonl, t >= 1); train one with `sami run`"
        )
    return found


def evaluate(
    eval_args: EvaluationArgs,
    judge_args: JudgeArgs,
    generation_args: GenerationArgs,
    query_args: QueryArgs,
    constitution_args: ConstitutionArgs,
    principle_args: PrincipleFileArgs,
    loading: ModelLoadingArgs | None = None,
) -> list[dict]:
    """What the flags ask for: two response files, two models, or the iterations of a run; the models that
    generate responses are loaded with ``loading``."""
    mode = eval_args.mode()
    groups = (eval_args, judge_args, generation_args, query_args, constitution_args, principle_args)
    if mode == "run":
        return evaluate_run(RunFolder(eval_args.run_dir), *groups, loading)
    if mode == "models":
        return compare_models(*groups, loading)
    return compare_files(eval_args, judge_args, generation_args, query_args, principle_args)


# ---------------------------------------------------------------------------------- printing


def _rate(rate: dict | None) -> str:
    if not rate or rate.get("estimate") is None:
        return "–"
    low, high = rate.get("ci_low"), rate.get("ci_high")
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{rate['estimate']:.3f}{ci}"


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: pairs, win rates with their 95% intervals, counts, adherence."""
    lines = [f"{summary['candidate']} vs {summary['baseline']}: {summary['pairs']['shared_pairs']} pairs"]
    if "raw" in summary:
        c, p_lc = summary["counts"], summary["lc"].get("p_value")
        lines.append(
            f"  raw {_rate(summary['raw'])}   balanced {_rate(summary['balanced'])}   LC {_rate(summary['lc'])}"
            f"   p(LC)={'–' if p_lc is None else p_lc}"
        )
        lines.append(
            f"  win {c['win']}  loss {c['loss']}  tie {c['tie']}  unparsed {c['unparsed']} "
            f"(failed requests {c['failed']}, parse failures {c['parse_failures']})"
        )
    for row in summary.get("adherence", []):
        stance = "" if row["affirmed"] else " (antithesis)"
        base = "–" if row["base_rate"] is None else f"{row['base_rate']:.0%}"
        trained = "–" if row["trained_rate"] is None else f"{row['trained_rate']:.0%}"
        lines.append(f"  {row['principle']}{stance}: {base} -> {trained} (n={row['trained_n']})")
    return "\n".join(lines)
