"""`sami evaluate`: does a model follow its constitution better than a baseline? (the paper's evaluation protocol)

Three ways to say what to compare, one judging path::

    # two response files (JSONL of {query_id, query, constitution, response}, or `sami generate` output)
    sami evaluate --candidate-responses sami.jsonl --baseline-responses base.jsonl \\
        --judge api --judge-model gpt-4o-mini --out eval/

    # two models or checkpoints: generate greedily on held-out queries under the same constitutions, then judge
    sami evaluate --candidate runs/demo/iter_3/checkpoint --baseline smollm2-135m \\
        --queries dialogue --split eval --principles hh --judge local --judge-model smollm2-135m --out eval/

    # every iteration of a run against its base model (the run's own held-out responses) and a second
    # baseline, written into the run
    sami evaluate --run runs/demo --second-baseline gemma3-270m \\
        --judge api --judge-model gpt-4o-mini --judge-base-url http://localhost:8000/v1
    sami report runs/demo

Outputs (in ``--out``, or ``RUN_DIR/iter_<t>/`` with ``--run``): ``responses_<name>.jsonl`` for
generated responses (reused on a rerun with the same settings), ``verdicts_vs_<baseline>.jsonl``
(every judgement: query, constitution, both responses, positions, prompt, raw judge output,
verdict, lengths), ``summary_vs_<baseline>.json`` (win rates, counts, judge counters, settings)
and, when the principles are verifiable, ``adherence_vs_<baseline>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from pathlib import Path

from sami.evaluation.judges import JudgeError
from sami.evaluation.pairwise import (
    DEFAULT_MAX_UNPARSED_FRACTION,
    MismatchedResponsesError,
    comparisons_from_records,
    compare,
    response_records,
)
from sami.evaluation.winrates import summarize
from sami.generation.generate import read_records
from sami.reporting.report import iteration_dirs

logger = logging.getLogger("sami.evaluate")


class UsageError(ValueError):
    """The command line does not say a complete evaluation."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sami evaluate",
        description="Judge a model's responses against a baseline's under the same constitutions; write every "
        "judgement (JSONL) and a summary with raw, length-corrected and length-controlled win rates.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = parser.add_argument_group("what to compare (response files, models, or a run)")
    what.add_argument("--candidate-responses", help="JSONL of the candidate's responses")
    what.add_argument("--baseline-responses", help="JSONL of the baseline's responses")
    what.add_argument("--candidate", help="candidate model spec (embedded name, checkpoint folder, .gguf, hub id)")
    what.add_argument("--baseline", help="baseline model spec; with --run, the run's base model")
    what.add_argument("--run", help="a run directory: evaluate each iter_<t> checkpoint against --baseline")
    what.add_argument("--iterations", type=int, nargs="*", help="with --run: which iterations (default: all found)")
    what.add_argument("--second-baseline", help="with --run: a second baseline model (e.g. the instruct model)")
    what.add_argument("--candidate-name", help="name of the candidate in records (default from the spec/file)")
    what.add_argument("--baseline-name", help="name of the baseline in records (default 'base' with --run)")
    what.add_argument("--second-baseline-name", default="instruct", help="name of the second baseline")
    what.add_argument("--regenerate", action="store_true",
                      help="with --run: generate fresh responses instead of reusing iter_<t>/eval_generations.jsonl")
    what.add_argument("--intersect", action="store_true",
                      help="compare only the (query, constitution) pairs both sides have instead of failing")

    gen = parser.add_argument_group("generation (when models are given)")
    gen.add_argument("--queries", help="query set: 'dialogue', 'summarisation', 'hh-rlhf:helpful-base', 'tldr', a "
                     "file (with --run: the run's config.yaml value)")
    gen.add_argument("--split", default="eval", help="query split to evaluate on (held out by default)")
    gen.add_argument("--limit", type=int, default=None, help="at most this many queries (seeded sample)")
    gen.add_argument("--principles", help="principle file or built-in name (default: RUN_DIR/principles.yaml)")
    gen.add_argument("--scheme", choices=["fixed_pair", "negations", "diverse"],
                     help="constitution scheme (the paper's method); default fixed_pair, or the run's")
    gen.add_argument("--principle-split", default="train", choices=["train", "eval"],
                     help="principles to build constitutions from: training or held-out ones")
    gen.add_argument("--num-constitutions", type=int, help="constitutions sampled per query; default 2, or the run's")
    gen.add_argument("--principles-per-constitution", type=int,
                     help="k of the diverse scheme; default 2, or the run's")
    gen.add_argument("--constitutions", default="first", choices=["first", "all"],
                     help="evaluate under the first sampled constitution of each query (the all-affirmed one for "
                     "fixed_pair/negations) or under all of them")
    gen.add_argument("--task", choices=["dialogue", "summarisation"], help="prompt task; default dialogue, or the run's")
    gen.add_argument("--prompt-kind", choices=["auto", "base", "chat"],
                     help="plain-text prompt (base models) or chat template; auto (default): chat if the tokenizer "
                     "has one")
    gen.add_argument("--max-new-tokens", type=int, help="response budget; default 350 (paper), or the run's")
    gen.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    gen.add_argument("--dtype", default="auto", help="model dtype: auto, float32, bfloat16, float16")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    gen.add_argument("--generation-backend", default="auto", choices=["auto", "hf", "vllm"],
                     help="generation engine; auto: vllm where it is installed, else hf")

    judge = parser.add_argument_group("judge")
    judge.add_argument("--judge", default="api", choices=["api", "local", "none"],
                       help="api: OpenAI-compatible endpoint; local: a Hugging Face model; none: verifiable "
                       "principles only")
    judge.add_argument("--judge-model", help="judge model name (api) or model spec (local; default smollm2-135m)")
    judge.add_argument("--judge-base-url", default="https://api.openai.com/v1", help="OpenAI-compatible endpoint")
    judge.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the API key ('' for none); the key is never written")
    judge.add_argument("--judge-template", default=None, help="dialogue, summarisation (default: --task)")
    judge.add_argument("--judge-cache", default=None, help="answer cache folder (default: OUT/judge_cache)")
    judge.add_argument("--judge-timeout", type=float, default=60.0, help="seconds per request")
    judge.add_argument("--judge-retries", type=int, default=4, help="retries on 429/5xx/timeouts")
    judge.add_argument("--judge-concurrency", type=int, default=8, help="requests in flight at once")
    judge.add_argument("--judge-max-tokens", type=int, default=256, help="judge completion budget")
    judge.add_argument("--margin", type=float, default=0.1, help="local judge: tie band on 2 p(A) - 1")
    judge.add_argument("--both-orders", action="store_true", help="judge every pair in both A/B orders")
    judge.add_argument("--seed", type=int, default=0, help="seeds A/B positions, query sampling and constitutions")
    judge.add_argument("--workers", type=int, default=8, help="judging threads (capped by the judge)")
    judge.add_argument("--serial", action="store_true", help="judge in one thread (debugging)")
    judge.add_argument("--max-unparsed-fraction", type=float, default=DEFAULT_MAX_UNPARSED_FRACTION,
                       help="fail when more verdicts than this are unparsed or failed")
    judge.add_argument("--allow-unparsed", action="store_true", help="never fail on unparsed verdicts (still counted)")
    judge.add_argument("--length", default="words", choices=["words", "tokens"], help="length unit of LC win rates")

    parser.add_argument("--out", help="output folder (not with --run)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


# ------------------------------------------------------------------------------------ helpers
DEFAULTS = {"scheme": "fixed_pair", "num_constitutions": 2, "principles_per_constitution": 2, "task": "dialogue",
            "prompt_kind": "auto", "max_new_tokens": 350, "queries": None}
"""Settings that, with ``--run``, default to the run's ``config.yaml`` (so the evaluation matches training)."""


def resolve_defaults(args, config: dict | None = None) -> None:
    """Fill unset options from the run's config, then from :data:`DEFAULTS`."""
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, (config or {}).get(key, default))


def read_run_config(run_dir: Path) -> dict:
    for name in ("config.yaml", "config.yml", "config.json"):
        path = run_dir / name
        if path.exists():
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
    return {}

def _read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"response file {str(path)!r} not found")
    records = read_records(path)
    if not records:
        raise ValueError(f"response file {path} is empty")
    return records


def _write_jsonl(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    partial.replace(path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def _name_of(spec: str) -> str:
    path = Path(spec)
    if path.name in ("checkpoint", "model") and path.parent.name:
        return path.parent.name  # runs/demo/iter_3/checkpoint -> iter_3
    return path.stem if path.suffix == ".gguf" else path.name or spec


def _load_principle_set(args, run_dir: Path | None):
    from sami.principles.io import load_principles

    if args.principles:
        return load_principles(args.principles)
    if run_dir is not None:
        for name in ("principles.yaml", "principles.yml", "principles.json"):
            if (run_dir / name).exists():
                return load_principles(run_dir / name)
    return None


def build_eval_items(args, principle_set) -> list[dict]:
    """Queries x constitutions to answer: one record per (query, constitution) without the response."""
    from sami.constitutions import build_sampler, query_rng, render_constitution
    from sami.data.queries import load_queries

    if not args.queries:
        raise UsageError("generating responses needs --queries (e.g. --queries dialogue)")
    if principle_set is None:
        raise UsageError("generating responses needs --principles (a file or a built-in name)")
    queries = load_queries(args.queries, args.split, limit=args.limit, seed=args.seed)
    sampler = build_sampler(args.scheme, principle_set, args.num_constitutions, split=args.principle_split,
                            principles_per_constitution=args.principles_per_constitution)
    items = []
    for query in queries:
        constitutions = sampler.sample(query_rng(args.seed, query.id))
        for constitution in constitutions[:1] if args.constitutions == "first" else constitutions:
            items.append({
                "query_id": query.id,
                "query": query.text,
                "constitution": render_constitution(constitution),
                "principles": [s.name for s in constitution.stances],
                "affirmed": [s.affirmed for s in constitution.stances],
            })
    return items


def generate_responses(spec: str, name: str, items: list[dict], args, path: Path) -> list[dict]:
    """Responses of one model to the evaluation items, greedy; reused from ``path`` when settings match."""
    from sami.generation import SamplingConfig, build_generator, generate_texts, resolve_backend, resolve_template

    backend = resolve_backend(args.generation_backend)
    settings = {
        "model": spec, "task": args.task, "prompt_kind": args.prompt_kind, "max_new_tokens": args.max_new_tokens,
        "backend": backend, "dtype": args.dtype,
        "items": hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16],
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if path.exists():
        try:
            cached = _read_jsonl(path)
        except ValueError:
            cached = []
        if cached and all(r.get("settings_hash") == digest for r in cached) and len(cached) == len(items):
            logger.info("reusing %s (same model and settings)", path)
            return cached

    logger.info("generating %d responses with %s (%s backend)", len(items), spec, backend)
    generator = build_generator(spec, backend, dtype=args.dtype, device=args.device, seed=args.seed)
    template = resolve_template(generator.tokenizer, args.task, args.prompt_kind)
    prompts = [template.render(generator.tokenizer, item["constitution"], item["query"]) for item in items]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed)
    completions = generate_texts(generator, prompts, sampling, add_special_tokens=template.add_special_tokens)
    records = [
        {**item, "response": c.text, "response_tokens": c.num_tokens, "finish_reason": c.finish_reason,
         "model": name, "model_spec": spec, "settings_hash": digest}
        for item, c in zip(items, completions)
    ]
    _write_jsonl(records, path)
    generator.release()
    return records


def make_judge(args, out: Path):
    if args.judge == "api":
        from sami.evaluation.api_judge import APIJudge

        if not args.judge_model:
            raise UsageError("--judge api needs --judge-model (e.g. gpt-4o-mini)")
        return APIJudge(
            args.judge_model,
            args.judge_base_url,
            api_key_env=args.judge_api_key_env,
            template=args.judge_template or args.task,
            timeout=args.judge_timeout,
            max_retries=args.judge_retries,
            max_concurrency=args.judge_concurrency,
            max_tokens=args.judge_max_tokens,
            cache_dir=args.judge_cache or out / "judge_cache",
        )
    if args.judge == "local":
        from sami.evaluation.local_judge import LocalJudge

        return LocalJudge.from_spec(args.judge_model or "smollm2-135m", dtype=args.dtype, device=args.device,
                                    template=args.judge_template or args.task, margin=args.margin)
    return None


def _verifiable(principle_set):
    """The verifiable principles of the set, if every one of them has a checker."""
    if principle_set is None:
        return None
    from sami.evaluation.verifiable import is_verifiable, verifiable_from_set

    if all(is_verifiable(p.name) for p in principle_set):
        return verifiable_from_set(principle_set)
    return None


def evaluate_pair(candidate_records, baseline_records, candidate, baseline, judge, args, out: Path,
                  principle_set=None) -> dict:
    """Judge (and check verifiable principles of) one candidate against one baseline; write files; return summary."""
    splits = {p.name: p.split for p in principle_set} if principle_set is not None else None
    comparisons, match = comparisons_from_records(candidate_records, baseline_records, intersect=args.intersect,
                                                  splits=splits)
    out.mkdir(parents=True, exist_ok=True)
    tag = _slug(baseline)
    summary: dict = {"candidate": candidate, "baseline": baseline, "pairs": match}
    if judge is not None:
        verdicts = compare(
            judge, comparisons, candidate=candidate, baseline=baseline, seed=args.seed, both_orders=args.both_orders,
            workers=args.workers, serial=True if args.serial else None, progress=not args.no_progress,
            max_unparsed_fraction=None if args.allow_unparsed else args.max_unparsed_fraction,
            out_path=out / f"verdicts_vs_{tag}.jsonl",
        )
        summary.update(summarize(verdicts, args.length))
        summary["judge_stats"] = judge.stats()
    verifiable = _verifiable(principle_set)
    if verifiable is not None:
        from sami.evaluation.verifiable import adherence_report

        rows = adherence_report(baseline_records, candidate_records, verifiable)
        adherence = {"base_name": baseline, "trained_name": candidate, "rows": [r.to_dict() for r in rows]}
        (out / f"adherence_vs_{tag}.json").write_text(json.dumps(adherence, indent=2) + "\n")
        summary["adherence"] = adherence["rows"]
    summary["settings"] = {k: v for k, v in vars(args).items() if k not in ("func",)}
    (out / f"summary_vs_{tag}.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _print_summary(summary)
    return summary


def _fmt(rate: dict | None) -> str:
    if not rate or rate.get("estimate") is None:
        return "–"
    low, high = rate.get("ci_low"), rate.get("ci_high")
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{rate['estimate']:.3f}{ci}"


def _print_summary(summary: dict) -> None:
    print(f"\n{summary['candidate']} vs {summary['baseline']}: {summary['pairs']['shared_pairs']} pairs")
    if "raw" in summary:
        c = summary["counts"]
        print(f"  raw {_fmt(summary['raw'])}   balanced {_fmt(summary['balanced'])}   LC {_fmt(summary['lc'])}"
              f"   p(LC)={summary['lc'].get('p_value') if summary['lc'].get('p_value') is not None else '–'}")
        print(f"  win {c['win']}  loss {c['loss']}  tie {c['tie']}  unparsed {c['unparsed']} "
              f"(failed requests {c['failed']}, parse failures {c['parse_failures']})")
    for row in summary.get("adherence", []):
        stance = "" if row["affirmed"] else " (antithesis)"
        base = "–" if row["base_rate"] is None else f"{row['base_rate']:.0%}"
        trained = "–" if row["trained_rate"] is None else f"{row['trained_rate']:.0%}"
        print(f"  {row['principle']}{stance}: {base} -> {trained} (n={row['trained_n']})")


def _run_checkpoints(run_dir: Path, iterations) -> dict[int, Path]:
    found = {}
    for t, folder in iteration_dirs(run_dir).items():
        if iterations and t not in iterations:
            continue
        for name in ("checkpoint", "model", "merged", "."):
            candidate = folder / name
            if (candidate / "config.json").exists():
                found[t] = candidate
                break
    return found


def _run_base_model(config: dict) -> str | None:
    for key in ("model", "base_model", "model_name_or_path"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("spec") or value.get("name") or value.get("model")
        if isinstance(value, str):
            return value
    return None


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _main(args)
    except Exception as error:
        if not _is_user_error(error):
            raise
        print(f"sami evaluate: error: {error}", file=sys.stderr)
        return 2


def _is_user_error(error: Exception) -> bool:
    """Errors whose message tells the user what to fix (no traceback needed).

    Matched by class name for sami.data/sami.models errors, so that the API-only path never
    imports torch just to name an exception class."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, (JudgeError, MismatchedResponsesError, FileNotFoundError, ValueError)) or bool(
        names & {"QueryError", "EmbeddedModelMissing"}
    )


def _main(args) -> int:
    files = bool(args.candidate_responses or args.baseline_responses)
    if args.run:
        if files or args.candidate:
            raise UsageError("--run evaluates the run's checkpoints; drop --candidate/--*-responses")
        return _evaluate_run(args)
    if not args.out:
        raise UsageError("give --out (the folder for verdicts and summary)")
    out = Path(args.out)
    resolve_defaults(args)
    principle_set = _load_principle_set(args, None)
    if files:
        if not (args.candidate_responses and args.baseline_responses):
            raise UsageError("give both --candidate-responses and --baseline-responses")
        candidate_records = response_records(_read_jsonl(args.candidate_responses), args.candidate_responses)
        baseline_records = response_records(_read_jsonl(args.baseline_responses), args.baseline_responses)
        candidate = args.candidate_name or Path(args.candidate_responses).stem
        baseline = args.baseline_name or Path(args.baseline_responses).stem
    elif args.candidate and args.baseline:
        items = build_eval_items(args, principle_set)
        candidate = args.candidate_name or _name_of(args.candidate)
        baseline = args.baseline_name or _name_of(args.baseline)
        if candidate == baseline:
            baseline += "-baseline"
        candidate_records = generate_responses(args.candidate, candidate, items, args,
                                               out / f"responses_{_slug(candidate)}.jsonl")
        baseline_records = generate_responses(args.baseline, baseline, items, args,
                                              out / f"responses_{_slug(baseline)}.jsonl")
    else:
        raise UsageError("say what to compare: --candidate-responses + --baseline-responses, "
                         "--candidate + --baseline (models), or --run RUN_DIR")
    judge = make_judge(args, out)
    if judge is None and _verifiable(principle_set) is None:
        raise UsageError("--judge none leaves nothing to measure unless --principles are verifiable "
                         "(e.g. --principles verifiable)")
    evaluate_pair(candidate_records, baseline_records, candidate, baseline, judge, args, out, principle_set)
    return 0


RUN_GENERATIONS = "eval_generations.jsonl"
"""What `sami run` writes per iteration: held-out responses (iter_0: the base model)."""


def _first_per_query(records: list[dict]) -> list[dict]:
    seen, kept = set(), []
    for record in records:
        if record["query_id"] not in seen:
            seen.add(record["query_id"])
            kept.append(record)
    return kept


def _evaluate_run(args) -> int:
    """Each iteration of a run against its base (and a second baseline).

    By default the held-out responses the run already generated are reused
    (``iter_<t>/eval_generations.jsonl``, ``iter_0`` being the base model), so the comparison uses
    exactly the run's held-out queries and constitutions; ``--regenerate`` (or a run without them)
    generates fresh ones from ``iter_<t>/checkpoint``.
    """
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} not found")
    config = read_run_config(run_dir)
    resolve_defaults(args, config)
    principle_set = _load_principle_set(args, run_dir)
    eval_dir = run_dir / "eval"
    baseline = args.baseline_name or "base"
    base_file = run_dir / "iter_0" / RUN_GENERATIONS
    reuse = not args.regenerate and base_file.exists()
    if reuse:
        base_records = response_records(_read_jsonl(base_file), str(base_file))
        if args.constitutions == "first":
            base_records = _first_per_query(base_records)
        keys = ("query_id", "query", "constitution", "principles", "affirmed")
        items = [{k: r[k] for k in keys if k in r} for r in base_records]
        logger.info("reusing the run's held-out responses (%s); --regenerate to generate anew", RUN_GENERATIONS)
    else:
        base_spec = args.baseline or _run_base_model(config)
        if not base_spec:
            raise UsageError(f"name the run's base model with --baseline (none found in {run_dir}/config.yaml)")
        items = build_eval_items(args, principle_set)
        base_records = generate_responses(base_spec, baseline, items, args, eval_dir / "responses_base.jsonl")
    baselines = [(baseline, base_records)]
    if args.second_baseline:
        name = args.second_baseline_name
        baselines.append((name, generate_responses(args.second_baseline, name, items, args,
                                                   eval_dir / f"responses_{_slug(name)}.jsonl")))
    checkpoints = _run_checkpoints(run_dir, args.iterations)
    iterations = sorted(
        t for t in {*checkpoints, *(t for t, d in iteration_dirs(run_dir).items() if (d / RUN_GENERATIONS).exists())}
        if t > 0 and (not args.iterations or t in args.iterations)
    )
    if not iterations:
        raise UsageError(f"no iter_<t>/ (t >= 1) with a checkpoint or {RUN_GENERATIONS} under {run_dir}")
    judge = make_judge(args, eval_dir)
    for t in iterations:
        candidate = args.candidate_name or f"sami-iter{t}"
        folder = run_dir / f"iter_{t}"
        if reuse and (folder / RUN_GENERATIONS).exists():
            records = response_records(_read_jsonl(folder / RUN_GENERATIONS), str(folder / RUN_GENERATIONS))
        elif t in checkpoints:
            records = generate_responses(str(checkpoints[t]), candidate, items, args, folder / "responses_eval.jsonl")
        else:
            raise UsageError(f"{folder} has {RUN_GENERATIONS} but the base has none and there is no checkpoint; "
                             "pass the same kind of input for both sides")
        for name, baseline_records in baselines:
            evaluate_pair(records, baseline_records, candidate, name, judge, args, folder, principle_set)
    print(f"\nwritten into {run_dir}/iter_<t>/; now run: sami report {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
