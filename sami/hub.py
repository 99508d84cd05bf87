"""The Hugging Face Hub: SAMI model cards, and pushing models, generations and verdicts (docs/hub.md).

A model card carries the ``sami`` tag (with ``generated_from_trainer``, as TRL's cards do), the
paper's citation, the base model, the principles and constitution scheme, the metrics of each
iteration, whether the weights are a full fine-tune, a merged LoRA or an adapter, and the command
that produced them. It is rendered from a run folder (:func:`card_from_run`) or by
``SAMITrainer.create_model_card`` after ``sami train``.

Generations and verdicts go up as Hub datasets (``datasets.Dataset.push_to_hub``): a run's
generations as one config per iteration (``iter_<t>``, splits ``train`` and ``eval``), verdicts as
one table with an ``iteration`` column. Every Hub call of sami goes through this module
(``HfApi`` for models, ``DatasetDict.push_to_hub`` for datasets), and a failed call becomes a
:class:`HubError` that says how to log in.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from sami.errors import SamiError
from sami.jsonl import read_json, write_text
from sami.principles.io import Principle, load_principles
from sami.run_folder import EvaluationFolder, IterationFolder, RunFolder, RunFolderError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

PAPER = {
    "title": "Self-Supervised Alignment with Mutual Information: Learning to Follow Principles without "
    "Preference Labels",
    "id": "2404.14313",
    "citation": (
        "@inproceedings{franken2024sami,\n"
        "  title={Self-Supervised Alignment with Mutual Information: Learning to Follow Principles without "
        "Preference Labels},\n"
        "  author={Fr{\\\"a}nken, Jan-Philipp and Zelikman, Eric and Rafailov, Rafael and Gandhi, Kanishk and "
        "Gerstenberg, Tobias and Goodman, Noah D.},\n"
        "  booktitle={Advances in Neural Information Processing Systems},\n"
        "  year={2024}\n}"
    ),
}
"""The SAMI paper (Fränken et al., NeurIPS 2024, arXiv 2404.14313), as TRL's trainers describe theirs (``_paper``)."""

TAGS = ("sami",)
"""The tags every SAMI model card carries (``SAMITrainer._tag_names``); the card adds ``generated_from_trainer``."""

Weights = Literal["full", "merged", "adapter"]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
"""The files of a peft adapter; at the root of a folder they make it an adapter, not a plain checkpoint."""
IGNORE_ON_UPLOAD = ["_*", "checkpoint-*"]
"""What a model upload leaves out, as ``Trainer.push_to_hub``: private files and Trainer checkpoints."""


class HubError(SamiError, RuntimeError):
    """A push to the Hugging Face Hub failed (not logged in, no write access, offline, bad repo id)."""


# ---------------------------------------------------------------------------------- model cards


@dataclass
class ModelCardInfo:
    """Everything a SAMI model card shows; :func:`render_model_card` turns it into the README."""

    model_name: str
    base_model: str | None = None
    hub_model_id: str | None = None
    weights: Weights = "full"
    principles: list[Principle] = field(default_factory=list)
    task: str = ""
    scheme: str | None = None
    num_constitutions: int | None = None
    principles_per_constitution: int | None = None
    iterations: list[dict] = field(default_factory=list)
    """``metrics.jsonl`` records (iteration 0 = the base model); empty for ``sami train``."""
    win_rates: dict[int, list[dict]] = field(default_factory=dict)
    """``{t: [summary_vs_<baseline>.json, ...]}`` of ``sami evaluate --run_dir``."""
    training_log: list[dict] = field(default_factory=list)
    """The Trainer's log history (``sami train``): per-step ``loss``, ``mi/bound``, ... and ``eval_*``."""
    settings: dict = field(default_factory=dict)
    """The settings that differ from the defaults (``config.yaml`` of a run, or the trainer's arguments)."""
    command: str | None = None
    datasets: list[str] = field(default_factory=list)
    """Hub dataset ids of the generations the model was trained on, when they were pushed."""
    tags: list[str] = field(default_factory=list)


def invocation(command: str, argv: Sequence[str] | None = None) -> str:
    """``sami <command> <argv>`` as a user would paste it (``argv``: the script's arguments, default this
    process's after ``sami <command>``), with the value of any ``--*_token`` flag hidden."""
    args, hide_next = [], False
    for arg in sys.argv[2:] if argv is None else argv:
        flag, equals, _ = arg.partition("=")
        secret = flag.startswith("--") and flag.endswith("_token")
        args.append("***" if hide_next else f"{flag}=***" if secret and equals else arg)
        hide_next = secret and not equals
    return shlex.join(["sami", command, *args])


def weights_of(folder: str | Path) -> Weights:
    """What a saved model folder holds: a peft ``adapter``, a LoRA ``merged`` into the base (its adapter kept in
    ``adapter/``), or a ``full`` fine-tune."""
    folder = Path(folder)
    if (folder / ADAPTER_FILES[0]).exists():
        return "adapter"
    if (folder / "adapter" / ADAPTER_FILES[0]).exists():
        return "merged"
    return "full"


def hub_id(spec: str | None) -> str | None:
    """``spec`` when it names a Hub repository (``owner/name``, not a local path), else None."""
    if not spec or Path(spec).exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", spec):
        return None
    return spec


def principles_of_records(records: Iterable[dict]) -> list[Principle]:
    """The principles behind generation records, from their constitutions' stances (``name``, ``affirmed``,
    ``text``): an affirmed stance's text is the definition, a negated one's the antithesis."""
    found: dict[str, dict[str, str]] = {}
    for record in records:
        for constitution in record.get("constitutions") or []:
            for stance in constitution.get("stances") or []:
                if stance.get("name") and stance.get("text"):
                    side = "definition" if stance.get("affirmed", True) else "antithesis"
                    found.setdefault(stance["name"], {}).setdefault(side, stance["text"])
    return [Principle(name, texts.get("definition", ""), texts.get("antithesis", "")) for name, texts in found.items()]


def card_from_run(
    run_dir: str | Path,
    iteration: int | None = None,
    *,
    model_name: str | None = None,
    hub_model_id: str | None = None,
    command: str | None = None,
    datasets: Sequence[str] = (),
) -> ModelCardInfo:
    """The card of iteration ``iteration``'s model (default: the last one with a checkpoint) of a ``sami run``.

    Reads the run's ``config.yaml``, ``principles.yaml``, ``metrics.jsonl`` and the ``summary_vs_*.json`` that
    ``sami evaluate --run_dir`` wrote, through :class:`~sami.run_folder.RunFolder`.
    """
    run = RunFolder(run_dir).require()
    folder = checkpoint_iteration(run, iteration)
    config = run.read_config()
    principle_set = load_principles(run.principles) if run.principles.exists() else None
    return ModelCardInfo(
        model_name=model_name or (hub_model_id or "").split("/")[-1] or run.root.resolve().name,
        base_model=config.get("model"),
        hub_model_id=hub_model_id,
        weights=weights_of(folder.checkpoint),
        principles=list(principle_set) if principle_set else [],
        task=principle_set.task if principle_set else "",
        scheme=config.get("scheme"),
        num_constitutions=config.get("num_constitutions"),
        principles_per_constitution=config.get("principles_per_constitution"),
        iterations=[m for m in run.read_metrics() if m["iteration"] <= folder.t],
        win_rates={
            t: [read_json(path, what="summary file") for path in it.summary_files()]
            for t, it in run.iterations().items()
            if 1 <= t <= folder.t and it.summary_files()
        },
        settings=config,
        command=command,
        datasets=list(datasets),
    )


def checkpoint_iteration(run: RunFolder, iteration: int | None = None) -> IterationFolder:
    """Iteration ``iteration`` of ``run`` (default: the last one with a checkpoint), which must have a checkpoint."""
    with_checkpoint = [folder for t, folder in run.iterations().items() if t >= 1 and folder.has_checkpoint]
    if iteration is not None:
        folder = run.iteration(iteration)
        if not folder.has_checkpoint:
            raise RunFolderError(f"{folder.checkpoint} holds no model; choose an iteration `sami run` has trained")
        return folder
    if not with_checkpoint:
        raise RunFolderError(f"{run.root} has no iter_<t>/checkpoint yet; train one with `sami run`")
    return with_checkpoint[-1]


def render_model_card(info: ModelCardInfo) -> str:
    """The README.md of a SAMI model: YAML metadata (tags, base model, library) and the Markdown body."""
    from huggingface_hub import ModelCardData

    base = hub_id(info.base_model)
    tags = ["generated_from_trainer", *TAGS, *(["lora"] if info.weights != "full" else [])]
    data = ModelCardData(
        base_model=base,
        datasets=info.datasets or None,
        library_name="peft" if info.weights == "adapter" else "transformers",
        model_name=info.model_name,
        pipeline_tag="text-generation",
        tags=list(dict.fromkeys([*tags, *info.tags])),
    )
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# Model card for {info.model_name}",
        _summary(info, base),
        _quick_start(info),
        *_principles_section(info),
        *_iterations_section(info),
        *_win_rates_section(info),
        *_training_log_section(info),
        *_reproduce_section(info),
        _versions_section(),
        "## Citation\n\nCite SAMI as:\n\n```bibtex\n" + PAPER["citation"] + "\n```",
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def write_model_card(info: ModelCardInfo, folder: str | Path) -> Path:
    """Write the card as ``folder/README.md`` (atomically); return its path."""
    return write_text(render_model_card(info), Path(folder) / "README.md")


WEIGHTS_TEXT = {
    "full": "All weights were fine-tuned; this is a plain `transformers` checkpoint.",
    "merged": "A LoRA adapter was trained and merged into the base weights (float32): this is a plain "
    "`transformers` checkpoint that loads without peft. The adapter itself is in `adapter/`.",
    "adapter": "This is a LoRA adapter (peft) for the base model, not merged: load it with peft.",
}


def _summary(info: ModelCardInfo, base: str | None) -> str:
    if base:
        origin = f"a fine-tuned version of [{base}](https://huggingface.co/{base})"
    elif info.base_model:
        origin = f"a fine-tuned version of `{info.base_model}`"
    else:
        origin = "a fine-tuned model"
    paper = f"[{PAPER['title']}](https://huggingface.co/papers/{PAPER['id']})"
    return (
        f"This model is {origin}, trained with SAMI (Self-Supervised Alignment with Mutual Information), a method "
        f"introduced in {paper}, to follow the principles below without preference labels: each response is "
        "trained to be more likely under the constitution it was written for than under the others (an InfoNCE "
        "bound on the mutual information between responses and constitutions).\n\n" + WEIGHTS_TEXT[info.weights]
    )


def _quick_start(info: ModelCardInfo) -> str:
    repo = info.hub_model_id or info.model_name
    if info.weights == "adapter":
        code = (
            "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")'
        )
    else:
        code = (
            "from transformers import pipeline\n\n"
            f'generator = pipeline("text-generation", model="{repo}")'
        )
    return (
        "## Quick start\n\nPrompt the model with a constitution (the principles it should follow) before the query, "
        f"as in training.\n\n```python\n{code}\n```"
    )


def _principles_section(info: ModelCardInfo) -> list[str]:
    if not info.principles:
        return []
    held_out = any(p.split == "eval" for p in info.principles)
    rows = [[p.name, p.definition, p.antithesis, *(["held out" if p.split == "eval" else "train"] if held_out else [])]
            for p in info.principles]
    lines = ["## Principles"]
    if info.task:
        lines.append(f"Task: {info.task}")
    lines.append(_table(["principle", "definition", "antithesis", *(["split"] if held_out else [])], rows))
    scheme = []
    if info.scheme:
        scheme.append(f"constitution scheme `{info.scheme}`")
    if info.num_constitutions:
        scheme.append(f"{info.num_constitutions} constitutions per query")
    if info.scheme == "diverse" and info.principles_per_constitution:
        scheme.append(f"{info.principles_per_constitution} principles per constitution")
    if scheme:
        lines.append("Constitutions: " + ", ".join(scheme) + ".")
    return lines


def _iterations_section(info: ModelCardInfo) -> list[str]:
    if not info.iterations:
        return []
    adherence = any("adherence/affirmed" in m for m in info.iterations)
    header = ["iteration", "MI bound (nats)", "rows", "cols", "accuracy", "response length (tokens)"]
    header += ["adherence: affirmed", "antithesis"] if adherence else []
    header += ["train steps", "train data kept"]
    rows = []
    for m in info.iterations:
        accuracy = (_float(m.get("accuracy/rows")) + _float(m.get("accuracy/cols"))) / 2
        row = ["base" if m["iteration"] == 0 else str(m["iteration"]), _num(m.get("mi/bound"), 4),
               _num(m.get("mi/bound_rows"), 4), _num(m.get("mi/bound_cols"), 4), _num(accuracy, 3),
               _num(m.get("response_length"), 1)]
        if adherence:
            row += [_num(m.get("adherence/affirmed"), 3), _num(m.get("adherence/antithesis"), 3)]
        row += [str(m.get("train_steps", "–")),
                f"{m['train_kept']}/{m['train_queries']}" if "train_queries" in m else "–"]
        rows.append(row)
    return [
        "## Iterations",
        ("Held-out metrics of each iteration's model (iteration 0 is the base model), from the run's "
         "`metrics.jsonl`. The MI bound is the InfoNCE lower bound on I(y; c | x), at most log C."),
        _table(header, rows),
    ]


def _win_rates_section(info: ModelCardInfo) -> list[str]:
    rows = []
    for t, summaries in sorted(info.win_rates.items()):
        for summary in summaries:
            counts = summary.get("counts") or {}
            rows.append([str(t), str(summary.get("baseline", "–")), str(summary.get("judge", "–")),
                         _num((summary.get("raw") or {}).get("estimate"), 3),
                         _num((summary.get("balanced") or {}).get("estimate"), 3),
                         _num((summary.get("lc") or {}).get("estimate"), 3),
                         "/".join(str(counts.get(k, 0)) for k in ("win", "loss", "tie", "unparsed"))])
    if not rows:
        return []
    return [
        "## Win rates",
        ("How often a judge preferred this iteration's response over the baseline's under the same constitution "
         "(raw; balanced and LC are length-corrected)."),
        _table(["iteration", "baseline", "judge", "raw", "balanced", "LC", "W/L/T/U"], rows),
    ]


TRAINING_LOG_ROWS = 20


def _training_log_section(info: ModelCardInfo) -> list[str]:
    steps = [h for h in info.training_log if "loss" in h and "step" in h]
    evals = [h for h in info.training_log if "eval_loss" in h]
    if not steps and not evals:
        return []
    lines = ["## Training log"]
    if steps:
        if len(steps) > TRAINING_LOG_ROWS:  # evenly spaced, always the last step
            stride = math.ceil(len(steps) / TRAINING_LOG_ROWS)
            steps = steps[::-1][::stride][::-1]
        rows = [[str(h["step"]), _num(h.get("loss"), 4), _num(h.get("mi/bound"), 4), _num(h.get("accuracy/rows"), 3),
                 _num(h.get("accuracy/cols"), 3), _num(h.get("length/response"), 1)] for h in steps]
        lines.append(_table(["step", "loss", "MI bound (nats)", "accuracy rows", "accuracy cols",
                             "response length (tokens)"], rows))
    if evals:
        last = evals[-1]
        lines.append(
            f"Held-out after training: loss {_num(last.get('eval_loss'), 4)}, MI bound "
            f"{_num(last.get('eval_mi/bound'), 4)} nats, accuracy rows {_num(last.get('eval_accuracy/rows'), 3)}."
        )
    return lines


def _reproduce_section(info: ModelCardInfo) -> list[str]:
    lines = []
    if info.command:
        lines.append(f"Produced by:\n\n```bash\n{info.command}\n```")
    if info.settings:
        text = yaml.safe_dump(info.settings, sort_keys=False, allow_unicode=True).strip()
        lines.append(f"<details><summary>Settings</summary>\n\n```yaml\n{text}\n```\n\n</details>")
    return ["## Reproduce", *lines] if lines else []


def _versions_section() -> str:
    from sami.environment import package_version, sami_version

    lines = [f"- sami: {sami_version()}"]
    lines += [f"- {name}: {package_version(name)}" for name in ("transformers", "torch", "datasets", "peft")]
    return "### Framework versions\n\n" + "\n".join(lines)


def _float(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan")


def _num(x, digits: int) -> str:
    value = _float(x)
    return "–" if not math.isfinite(value) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- pushing models


def _api():
    from huggingface_hub import HfApi

    from sami import __version__

    return HfApi(library_name="sami", library_version=__version__)


def _hub_call(what: str, call):
    """Run a Hub ``call``; its failures become a :class:`HubError` that names the fix."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, OfflineModeIsEnabled

    try:
        return call()
    except (HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled, HFValidationError) as error:
        raise HubError(
            f"{what} failed: {error}. Log in with `hf auth login` (or set HF_TOKEN) with a token that can write "
            "there, unset HF_HUB_OFFLINE, and check the repo id (user/name)"
        ) from error


def create_repo(repo_id: str, *, repo_type: str = "model", token: str | None = None,
                private: bool | None = None) -> str:
    """Create ``repo_id`` if needed (an existing repo keeps its visibility); return its full id (``user/name``)."""
    url = _hub_call(
        f"creating the Hub repo {repo_id}",
        lambda: _api().create_repo(repo_id, repo_type=repo_type, token=token, private=private, exist_ok=True),
    )
    return url.repo_id


def upload_model(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload SAMI model",
    blocking: bool = True,
):
    """Upload a saved model folder (card included) to the model repo ``repo_id``, which must exist
    (:func:`create_repo`); Trainer checkpoints and ``_*`` files stay behind. Returns the ``CommitInfo`` (a
    future when ``blocking`` is False)."""
    return _hub_call(
        f"uploading {folder} to {repo_id}",
        lambda: _api().upload_folder(
            repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, token=token,
            revision=revision, ignore_patterns=IGNORE_ON_UPLOAD, run_as_future=not blocking,
        ),
    )


def push_run_model(
    run_dir: str | Path,
    repo_id: str | None = None,
    *,
    iteration: int | None = None,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    command: str | None = None,
    datasets: Sequence[str] = (),
) -> str:
    """Push iteration ``iteration``'s model of a ``sami run`` (default: the last) with its card.

    The card (:func:`card_from_run`) is written into the checkpoint folder as ``README.md``, then the folder is
    uploaded as it is: merged weights (with ``adapter/``) or the adapter, as ``merge_lora_on_save`` saved it.
    ``repo_id`` defaults to the run folder's name (in the user's namespace). Returns the repo's full id.
    """
    run = RunFolder(run_dir).require()
    folder = checkpoint_iteration(run, iteration)
    repo_id = create_repo(repo_id or run.root.resolve().name, token=token, private=private)
    write_model_card(card_from_run(run.root, folder.t, hub_model_id=repo_id, command=command, datasets=datasets),
                     folder.checkpoint)
    upload_model(folder.checkpoint, repo_id, token=token, revision=revision,
                 commit_message=f"SAMI iteration {folder.t} of {run.root.resolve().name}")
    logger.info("pushed %s to https://huggingface.co/%s", folder.checkpoint, repo_id)
    return repo_id


# ---------------------------------------------------------------------------------- pushing datasets

FREE_FORM = ("provenance", "meta")
"""Record fields whose keys vary from record to record: stored as JSON text, so every row has one schema."""


def _row(record: dict) -> dict:
    return {k: json.dumps(v, sort_keys=True) if k in FREE_FORM else v for k, v in record.items()}


def generations_dataset(path: str | Path) -> Dataset:
    """A generations file (``sami generate``, ``iter_<t>/generations.jsonl``) as a ``datasets.Dataset``, one row per
    record (dropped records included, with their ``dropped`` reason), validated by
    :class:`~sami.records.GenerationRecord`."""
    from datasets import Dataset

    from sami.records import RecordError, read_generations

    records = read_generations(path)
    if not records:
        raise RecordError(f"{path} holds no generation records; generate some first")
    return Dataset.from_list([_row(record.to_dict()) for record in records])


def run_generations(run_dir: str | Path) -> dict[str, DatasetDict]:
    """A run's generations, one config per iteration: ``iter_<t>`` with split ``train`` (the training data the
    model of t-1 generated) and ``eval`` (the held-out responses of the model of t; ``iter_0``: the base)."""
    from datasets import DatasetDict

    run = RunFolder(run_dir).require()
    configs = {}
    for t, folder in run.iterations().items():
        splits = {name: generations_dataset(path) for name, path in (("train", folder.generations),
                                                                       ("eval", folder.eval_generations))
                  if path.exists()}
        if splits:
            configs[f"iter_{t}"] = DatasetDict(splits)
    if not configs:
        raise RunFolderError(f"{run.root} has no iter_<t>/generations.jsonl or eval_generations.jsonl to push")
    return configs


def verdicts_dataset(folders: Iterable[EvaluationFolder]) -> Dataset:
    """Every verdict in ``folders`` (``verdicts_vs_<baseline>.jsonl``) as one table; ``iteration`` is the run
    iteration the candidate comes from (None outside a run). ``candidate`` and ``baseline`` name the sides."""
    from datasets import Dataset

    from sami.records import read_verdicts

    rows = [
        {"iteration": getattr(folder, "t", None), **_row(verdict.to_dict())}
        for folder in folders
        for path in folder.verdict_files()
        for verdict in read_verdicts(path)
    ]
    if not rows:
        raise RunFolderError("no verdicts_vs_<baseline>.jsonl found; run `sami evaluate` first")
    return Dataset.from_list(rows)


def evaluation_folders(path: str | Path) -> list[EvaluationFolder]:
    """The folders holding verdicts under ``path``: a run's ``iter_<t>/``, else ``path`` itself (``--output_dir``)."""
    run = RunFolder(path)
    iterations = [folder for folder in run.iterations().values() if folder.verdict_files()]
    return iterations or [EvaluationFolder(Path(path))]


def push_datasets(configs: dict[str, DatasetDict], repo_id: str, *, token: str | None = None,
                  private: bool | None = None) -> str:
    """Push each config's splits to the dataset repo ``repo_id``; return the dataset's URL."""
    for name, dataset in configs.items():
        push = functools.partial(dataset.push_to_hub, repo_id, config_name=name, private=private, token=token,
                                 commit_message=f"Upload SAMI {name}")
        _hub_call(f"pushing the {name} config to the dataset {repo_id}", push)
    url = f"https://huggingface.co/datasets/{repo_id}"
    logger.info("pushed %s to %s", ", ".join(configs), url)
    return url


def push_generations(path: str | Path, repo_id: str, *, split: str = "train", token: str | None = None,
                     private: bool | None = None) -> str:
    """Push generations as a Hub dataset: a run folder (one config per iteration, :func:`run_generations`) or one
    generations file (the ``default`` config, split ``split``). Returns the dataset's URL."""
    from datasets import DatasetDict

    path = Path(path)
    configs = run_generations(path) if path.is_dir() else {"default": DatasetDict({split: generations_dataset(path)})}
    return push_datasets(configs, repo_id, token=token, private=private)


def push_verdicts(path: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None) -> str:
    """Push the verdicts of ``sami evaluate`` (a run folder, or its ``--output_dir``) as a Hub dataset (the
    ``default`` config, split ``train``). Returns the dataset's URL."""
    from datasets import DatasetDict

    dataset = verdicts_dataset(evaluation_folders(path))
    return push_datasets({"default": DatasetDict({"train": dataset})}, repo_id, token=token, private=private)
