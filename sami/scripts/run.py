"""Run a whole SAMI experiment: principles -> (generate -> train -> evaluate) x T, resumable.

    sami run --config demo_cpu                             # the offline demo on the embedded model, in runs/demo
    sami run --config demo_cpu --resume true               # continue it after a crash
    sami run --config demo_cpu --output_dir runs/demo2 --learning_rate 3e-5   # flags override the recipe
    sami run --config hh_mistral7b                         # the paper's HH-RLHF setting (GPUs, hub access)
    sami run --config demo_cpu --principles verifiable --judge_iterations true --judge none   # + adherence per iteration
    sami run --config hh_mistral7b --accelerate_config fsdp2   # re-launched under accelerate launch
    sami run --config demo_cpu --push_to_hub true --hub_model_id me/sami-demo --push_generations_to_hub me/sami-demo-data

--output_dir is the run folder (docs/pipeline.md); its run.log holds the full log. Prints the MI lower
bound and the mean response length per iteration (0 = base) on held-out queries, and with verifiable
principles the adherence, base vs final, and an example (docs/effect.md). --push_to_hub pushes the
final model with its card, --push_generations_to_hub the generations (docs/hub.md).
"""

from __future__ import annotations

from sami.config.args import (
    ConstitutionArgs,
    GenerationArgs,
    HubPushArgs,
    IterationArgs,
    LaunchArgs,
    ModelArgs,
    PrincipleArgs,
    QueryArgs,
)
from sami.config.commands import require_output_dir
from sami.config.evaluation import JudgeArgs
from sami.config.parser import SamiParser
from sami.evaluation.effect import effect_summary
from sami.launch import relaunch
from sami.pipeline import Pipeline, format_table
from sami.training import SAMIConfig


def make_parser() -> SamiParser:
    return SamiParser(
        [ModelArgs, PrincipleArgs, QueryArgs, ConstitutionArgs, GenerationArgs, IterationArgs, SAMIConfig, JudgeArgs,
         HubPushArgs, LaunchArgs],
        prog="sami run",
        description=__doc__,
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    *groups, hub_args, launch = parser.parse_args_and_config(argv)
    require_output_dir(parser, argv, "the run folder (runs/NAME)")
    model_args, training_args = groups[0], groups[6]
    model_args.options().check_training(training_args.use_lora)  # QLoRA needs LoRA
    status = relaunch("run", argv, launch)
    if status is not None:
        return status
    pipeline = Pipeline(*groups)
    metrics = pipeline.run()
    print(f"\nSAMI run {pipeline.run_folder.root}: held-out MI lower bound and response length per iteration\n")
    print(format_table(metrics))
    if pipeline.verifiable is not None and len(metrics) > 1:
        print()
        print(effect_summary(pipeline.run_folder, pipeline.verifiable))
    push(pipeline, hub_args, argv)
    return 0


def push(pipeline: Pipeline, hub_args: HubPushArgs, argv: list[str] | None) -> None:
    """Push the generations and the final model (with its card) where the flags ask, from the main process."""
    from accelerate import PartialState

    args = pipeline.training_args
    if not PartialState().is_main_process or not (hub_args.push_generations_to_hub or args.push_to_hub):
        return
    from sami.hub import invocation, push_generations, push_run_model

    datasets = []
    if hub_args.push_generations_to_hub:
        print(push_generations(pipeline.run_folder.root, hub_args.push_generations_to_hub, token=args.hub_token,
                               private=hub_args.private_dataset or None))
        datasets.append(hub_args.push_generations_to_hub)
    if args.push_to_hub:
        repo = push_run_model(pipeline.run_folder.root, args.hub_model_id, token=args.hub_token,
                              private=args.hub_private_repo, revision=args.hub_revision,
                              command=invocation("run", argv), datasets=datasets)
        print(f"model pushed to https://huggingface.co/{repo}")
