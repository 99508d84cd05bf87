"""Does a model follow its constitution better than a baseline? (the paper's evaluation protocol)

Three ways to say what to compare, one judging path:

    # every iteration of a run against its base model (the run's own held-out responses), and an
    # instruct model as a second baseline; written into the run
    sami evaluate --run_dir runs/demo --second_baseline HuggingFaceTB/SmolLM2-360M-Instruct \\
        --judge api --judge_model gpt-4o-mini
    sami report --run_dir runs/demo

    # two models or checkpoints: greedy responses to held-out queries under the same constitutions, then judged
    sami evaluate --candidate runs/demo/iter_3/checkpoint --baseline smollm2-135m \\
        --principles hh --queries dialogue --max_eval_queries 20 \\
        --judge local --judge_model smollm2-135m --output_dir eval/

    # two response files ({query_id, query, constitution, response} records, or `sami generate` output):
    # JSONL, a datasets folder, a parquet file or a hub dataset id (its eval split)
    sami evaluate --candidate_responses sami.jsonl --baseline_responses base.jsonl \\
        --judge api --judge_model my-model --judge_base_url http://localhost:8000/v1 --judge_api_key_env "" \\
        --output_dir eval/
    sami evaluate --candidate_responses me/sami-gens:iter_3 --baseline_responses me/sami-gens:iter_0 \\
        --judge api --judge_model gpt-4o-mini --output_dir eval/ --push_verdicts_to_hub me/sami-verdicts

With --run_dir, settings not given (queries, task, constitutions, generation, judge, seed) default to
the run's config.yaml, so the evaluation matches training; the principles are the run's.
Responses are generated greedily (--temperature does not apply), the models loaded with --dtype,
--attn_implementation, --model_revision, ... as in `sami generate`; the local judge with --judge_model_kwargs.

Outputs (in --output_dir, or RUN_DIR/iter_<t>/ with --run_dir): responses_<name>.jsonl, the
generated responses (a generations file: a rerun generates only what is missing; with --run_dir
the baselines' are in RUN_DIR/eval/), verdicts_vs_<baseline>.jsonl (every judgement),
summary_vs_<baseline>.json (win rates, counts, judge counters, settings) and, when every
principle is verifiable, adherence_vs_<baseline>.json. --push_verdicts_to_hub pushes every verdict
as a Hub dataset (docs/hub.md). See docs/evaluation.md.
"""

from __future__ import annotations

from sami.config.args import ConstitutionArgs, GenerationArgs, ModelLoadingArgs, PrincipleFileArgs, QueryArgs
from sami.config.evaluation import EvaluationArgs, JudgeArgs, parse_evaluation_args
from sami.config.parser import SamiParser
from sami.errors import ConfigError
from sami.evaluation.protocol import evaluate, format_summary


def make_parser() -> SamiParser:
    return SamiParser(
        [EvaluationArgs, JudgeArgs, PrincipleFileArgs, QueryArgs, ConstitutionArgs, GenerationArgs, ModelLoadingArgs],
        prog="sami evaluate",
        description=__doc__,
    )


def main(argv: list[str] | None = None) -> int:
    eval_args, judge_args, principle_args, query_args, constitution_args, generation_args, loading = (
        parse_evaluation_args(make_parser, argv)
    )
    if eval_args.push_verdicts_to_hub and judge_args.judge == "none":
        raise ConfigError(
            f"--push_verdicts_to_hub {eval_args.push_verdicts_to_hub} pushes the judge's verdicts, but --judge none "
            "judges nothing: choose a judge (--judge api or local), or drop --push_verdicts_to_hub"
        )
    summaries = evaluate(
        eval_args, judge_args, generation_args, query_args, constitution_args, principle_args, loading=loading
    )
    for summary in summaries:
        print(f"\n{format_summary(summary)}")
    if eval_args.run_dir:
        print(f"\nwritten into {eval_args.run_dir}/iter_<t>/; now run: sami report --run_dir {eval_args.run_dir}")
    if eval_args.push_verdicts_to_hub:
        from sami.hub import push_verdicts

        url = push_verdicts(eval_args.run_dir or eval_args.output_dir, eval_args.push_verdicts_to_hub,
                            private=eval_args.private_dataset or None)
        print(f"verdicts pushed to {url}")
    return 0
