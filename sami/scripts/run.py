"""Run a whole SAMI experiment: principles -> (generate -> train -> evaluate) x T, resumable.

    sami run --config demo_cpu                             # the offline demo on the embedded model, in runs/demo
    sami run --config demo_cpu --resume true               # continue it after a crash
    sami run --config demo_cpu --output_dir runs/demo2 --learning_rate 3e-5   # flags override the recipe
    sami run --config hh_mistral7b                         # the paper's HH-RLHF setting (GPUs, hub access)
    sami run --config demo_cpu --principles verifiable --judge_iterations true --judge none   # + adherence per iteration
    accelerate launch --config_file examples/accelerate/fsdp2.yaml -m sami.cli run --config hh_mistral7b

--output_dir is the run folder (docs/pipeline.md). Prints the MI lower bound and the mean response
length per iteration (0 = base) on held-out queries.
"""

from __future__ import annotations

from sami.config.args import ConstitutionArgs, GenerationArgs, IterationArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.config.commands import require_output_dir
from sami.config.evaluation import JudgeArgs
from sami.config.parser import SamiParser
from sami.pipeline import Pipeline, format_table
from sami.training import SAMIConfig


def make_parser() -> SamiParser:
    return SamiParser(
        [ModelArgs, PrincipleArgs, QueryArgs, ConstitutionArgs, GenerationArgs, IterationArgs, SAMIConfig, JudgeArgs],
        prog="sami run",
        description=__doc__,
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    groups = parser.parse_args_and_config(argv)
    require_output_dir(parser, argv, "the run folder (runs/NAME)")
    pipeline = Pipeline(*groups)
    metrics = pipeline.run()
    print(f"\nSAMI run {pipeline.run_folder.root}: held-out MI lower bound and response length per iteration\n")
    print(format_table(metrics))
    return 0
