"""Run a whole SAMI experiment: principles -> (generate -> train -> evaluate) x T, resumable.

    sami run --config demo_cpu                      # the offline demo on the embedded model
    sami run --config demo_cpu --resume            # continue it after a crash
    sami run --config hh_mistral7b                  # the paper's HH-RLHF setting (GPUs, hub access)
    accelerate launch --config_file docs/accelerate/fsdp.yaml -m sami.cli run --config hh_mistral7b

Prints the MI lower bound and mean response length per iteration (0 = base) on held-out queries.
"""

from __future__ import annotations

from sami.config.args import ConstitutionArgs, GenerationArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.config.parser import SamiParser
from sami.pipeline import IterationArgs, Pipeline, format_table
from sami.training import SAMIConfig


def make_parser() -> SamiParser:
    return SamiParser(
        [ModelArgs, PrincipleArgs, QueryArgs, ConstitutionArgs, GenerationArgs, IterationArgs, SAMIConfig],
        prog="sami run",
        description=__doc__,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if "--output_dir" not in argv:  # the run folder decides where checkpoints go
        argv += ["--output_dir", "unused"]
    pipeline = Pipeline(*make_parser().parse_args_and_config(argv))
    metrics = pipeline.run()
    print(f"\nSAMI run {pipeline.run_dir}: held-out MI lower bound and response length per iteration\n")
    print(format_table(metrics))
    return 0
