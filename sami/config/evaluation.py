"""Arguments of ``sami evaluate``: what to compare and where the results go, and which judge decides.

Queries, principles, constitutions and generation use the shared groups of :mod:`sami.config.args`,
so a setting has the same flag here as in ``sami generate`` and ``sami run``. With ``--run_dir``
the settings the user does not give default to the run's ``config.yaml``
(:func:`parse_evaluation_args`), so the evaluation matches training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from sami.config.args import ConstitutionArgs, GenerationArgs, ModelLoadingArgs, QueryArgs
from sami.config.commands import check_split
from sami.config.parser import SamiParser
from sami.errors import ConfigError
from sami.evaluation.pairwise import DEFAULT_MAX_UNPARSED_FRACTION
from sami.models.options import ModelOptions
from sami.run_folder import RunFolder

Mode = Literal["files", "models", "run"]


@dataclass
class EvaluationArgs:
    """What to compare (two response files, two models, or the iterations of a run) and the outputs."""

    candidate_responses: str | None = field(
        default=None,
        metadata={"help": "The candidate's responses (JSONL, datasets folder or hub id): {query_id, query, "
                  "constitution, response} records, or generations (`sami generate`, `sami run`)."},
    )
    baseline_responses: str | None = field(
        default=None, metadata={"help": "The baseline's responses (JSONL, datasets folder or hub id)."}
    )
    candidate: str | None = field(
        default=None,
        metadata={"help": "Candidate model spec (embedded name, checkpoint folder, .gguf or hub id); its responses "
                  "are generated."},
    )
    baseline: str | None = field(
        default=None,
        metadata={"help": "Baseline model spec; with --run_dir, the base model when responses are generated "
                  "(default: the run's `model`)."},
    )
    run_dir: str | None = field(
        default=None,
        metadata={"help": "An existing run: judge every iteration against the base model, into RUN_DIR/iter_<t>/."},
    )
    only_iterations: list[int] | None = field(
        default=None, metadata={"help": "With --run_dir: evaluate only these iterations (default: every one found)."}
    )
    second_baseline: str | None = field(
        default=None, metadata={"help": "With --run_dir: a second baseline model (e.g. the instruct model)."}
    )
    candidate_name: str | None = field(
        default=None,
        metadata={"help": "The candidate's name in records (default: from the file or spec; sami-iter<t>)."},
    )
    baseline_name: str | None = field(
        default=None, metadata={"help": "The baseline's name in records (default: from the file or spec; base)."}
    )
    second_baseline_name: str = field(default="instruct", metadata={"help": "The second baseline's name in records."})
    regenerate: bool = field(
        default=False,
        metadata={"help": "With --run_dir: generate responses from the checkpoints instead of judging the run's "
                  "iter_<t>/eval_generations.jsonl."},
    )
    intersect: bool = field(
        default=False,
        metadata={"help": "Compare only the (query, constitution) pairs both sides answer instead of failing."},
    )
    split: str = field(default="eval", metadata={"help": "Query split to generate on: eval (held out), train or all."})
    principle_split: Literal["train", "eval"] = field(
        default="train", metadata={"help": "Principles to build constitutions from: train or eval (held out)."}
    )
    constitutions: Literal["first", "all"] = field(
        default="first",
        metadata={"help": "Evaluate under each query's first constitution (for fixed_pair/negations the one "
                  "affirming every principle) or under all of them."},
    )
    length_unit: Literal["words", "tokens"] = field(
        default="words", metadata={"help": "Length measure of the length-corrected win rates."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for responses, verdicts and summaries (not with --run_dir)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds A/B positions, the query sample and the constitutions."})
    push_verdicts_to_hub: str | None = field(
        default=None,
        metadata={"help": "Hub dataset repo (user/name) to push every verdict to (one table, with `iteration`)."},
    )
    private_dataset: bool = field(
        default=False, metadata={"help": "Create the pushed dataset repo as private (an existing repo keeps its visibility)."}
    )
    no_progress: bool = field(default=False, metadata={"help": "Hide progress bars."})

    def __post_init__(self) -> None:
        check_split(self.split)

    def mode(self) -> Mode:
        """What the flags ask to compare; a :class:`ConfigError` names the fix for any other combination."""
        files = [self.candidate_responses, self.baseline_responses]
        models = [self.candidate, self.baseline]
        if self.run_dir:
            if any(files) or self.candidate:
                raise ConfigError(
                    "--run_dir evaluates the run's iterations; drop --candidate, --candidate_responses and "
                    "--baseline_responses (or drop --run_dir to compare those)"
                )
            if self.output_dir:
                raise ConfigError("--run_dir writes into RUN_DIR/iter_<t>/; drop --output_dir")
            return "run"
        run_only = [f"--{name}" for name in ("only_iterations", "second_baseline", "regenerate") if getattr(self, name)]
        if run_only:
            raise ConfigError(f"{', '.join(run_only)} only apply to a run; add --run_dir RUN_DIR")
        if any(files) and any(models):
            raise ConfigError(
                "compare either response files (--*_responses) or models (--candidate, --baseline), not both"
            )
        if any(files) and not all(files):
            raise ConfigError("give both --candidate_responses and --baseline_responses")
        if any(models) and not all(models):
            raise ConfigError("give both --candidate and --baseline (model specs)")
        if not any(files + models):
            raise ConfigError(
                "say what to compare: --candidate_responses + --baseline_responses (files), --candidate + --baseline "
                "(models), or --run_dir RUN_DIR (a run)"
            )
        if not self.output_dir:
            raise ConfigError("give --output_dir, the folder for verdicts and summaries")
        return "files" if any(files) else "models"


@dataclass
class JudgeArgs:
    """Which judge decides, and how it is asked."""

    judge: Literal["api", "local", "none"] = field(
        default="api",
        metadata={"help": "api: an OpenAI-compatible endpoint; local: a Hugging Face model; none: verifiable "
                  "principles only."},
    )
    judge_model: str | None = field(
        default=None, metadata={"help": "Judge model name (api) or model spec (local; default smollm2-135m)."}
    )
    judge_base_url: str = field(default="https://api.openai.com/v1", metadata={"help": "OpenAI-compatible endpoint."})
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key ('' for none); the key is never written."},
    )
    judge_api_version: str | None = field(
        default=None, metadata={"help": "Azure OpenAI: the api-version the endpoint needs (sends the key as api-key)."}
    )
    judge_template: str | None = field(
        default=None,
        metadata={"help": "dialogue, summarisation, or a template with {constitution} {query} {response_a} "
                  "{response_b} (default: --task)."},
    )
    judge_cache: str | None = field(
        default=None,
        metadata={"help": "Answer cache folder (default: OUTPUT_DIR/judge_cache, RUN_DIR/eval/judge_cache)."},
    )
    judge_timeout: float = field(default=60.0, metadata={"help": "Seconds per request."})
    judge_retries: int = field(default=4, metadata={"help": "Retries on 429, 5xx and timeouts."})
    judge_concurrency: int = field(default=8, metadata={"help": "Requests in flight at once."})
    judge_max_tokens: int = field(default=256, metadata={"help": "Judge completion budget."})
    judge_dtype: str = field(default="auto", metadata={"help": "Local judge: weights dtype (auto, float32, bfloat16)."})
    judge_model_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Local judge: loading options as JSON (a mapping in YAML), the keys of the model options: "
                  "dtype (instead of --judge_dtype), revision, trust_remote_code, attn_implementation, device_map, "
                  "load_in_4bit, load_in_8bit, bnb_4bit_quant_type, use_bnb_nested_quant."},
    )
    margin: float = field(default=0.1, metadata={"help": "Local judge: tie band on 2 p(A) - 1."})
    both_orders: bool = field(default=False, metadata={"help": "Judge every pair in both A/B orders."})
    workers: int = field(default=8, metadata={"help": "Judging threads (capped by the judge's concurrency)."})
    serial: bool = field(default=False, metadata={"help": "Judge in one thread (debugging)."})
    max_unparsed_fraction: float = field(
        default=DEFAULT_MAX_UNPARSED_FRACTION,
        metadata={"help": "Fail when more verdicts than this are unparsed or failed."},
    )
    allow_unparsed: bool = field(default=False, metadata={"help": "Never fail on unparsed verdicts (still counted)."})

    def __post_init__(self) -> None:
        options, _ = self.judge_loading()  # bad JSON, an unknown key or a dtype typo fail before any work
        options.check_quantization()

    def judge_loading(self) -> tuple[ModelOptions, str]:
        """The local judge's loading options and dtype (``--judge_model_kwargs``' dtype, else ``--judge_dtype``)."""
        options, dtype = ModelOptions.from_kwargs(self.judge_model_kwargs, "--judge_model_kwargs")
        return options, dtype or self.judge_dtype


RUN_SETTINGS = (QueryArgs, ConstitutionArgs, GenerationArgs, JudgeArgs, ModelLoadingArgs)
"""The groups whose values ``--run_dir`` takes from the run's ``config.yaml`` (and ``seed``): the
settings a run and its evaluation share (the loading options included, so regenerated responses load
the models as the run did). Principles come from ``RUN_DIR/principles.yaml``."""


def run_settings(run: RunFolder) -> dict:
    """The values of the run's ``config.yaml`` for the settings evaluation shares with training."""
    names = {f.name for group in RUN_SETTINGS for f in fields(group)} | {"seed"}
    return {key: value for key, value in run.read_config().items() if key in names}


def parse_evaluation_args(make_parser: Callable[[], SamiParser], argv: list[str] | None) -> tuple:
    """Parse ``argv``; with ``--run_dir``, settings not given default to the run's ``config.yaml``.

    The command line wins over ``--config``, which wins over the run's settings, which win over the
    dataclass defaults.
    """
    parsed = make_parser().parse_args_and_config(argv)
    run_dir = next(group for group in parsed if isinstance(group, EvaluationArgs)).run_dir
    if not run_dir:
        return parsed
    parser = make_parser()
    parser.set_defaults(**run_settings(RunFolder(run_dir).require()))
    return parser.parse_args_and_config(argv)
