import importlib
from dataclasses import dataclass, field

import pytest

from sami import cli
from sami.config.parser import ConfigError, SamiParser, resolve_config_path
from sami.scripts import run

COMMANDS = tuple(cli.COMMANDS)


@dataclass
class Example:
    steps: int = 1
    name: str = "a"
    tags: list[str] = field(default_factory=list)


def test_flags_override_the_yaml(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 5\nname: from-yaml\ntags: [x, y]\n")
    (args,) = SamiParser([Example]).parse_args_and_config(["--config", str(config), "--steps", "7"])
    assert (args.steps, args.name, args.tags) == (7, "from-yaml", ["x", "y"])


def test_unknown_yaml_key_suggests_the_nearest(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("stepz: 5\n")
    with pytest.raises(ConfigError, match="stepz \\(did you mean 'steps'\\?\\)"):
        SamiParser([Example]).parse_args_and_config(["--config", str(config)])


def test_unknown_flag_and_missing_config():
    with pytest.raises(ConfigError, match="unrecognised arguments: --nope"):
        SamiParser([Example]).parse_args_and_config(["--nope", "1"])
    with pytest.raises(ConfigError, match="not found"):
        resolve_config_path("no_such_recipe")


def test_every_shipped_recipe_parses_into_the_run_arguments():
    from sami.config.parser import RECIPES_DIR

    recipes = sorted(RECIPES_DIR.glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        groups = run.make_parser().parse_args_and_config(["--config", recipe.stem, "--output_dir", "x"])
        iteration_args = next(g for g in groups if type(g).__name__ == "IterationArgs")
        assert iteration_args.iterations >= 1, recipe
        training_args = next(g for g in groups if type(g).__name__ == "SAMIConfig")
        assert training_args.output_dir == "x", recipe  # the flag beats the recipe
        groups = run.make_parser().parse_args_and_config(["--config", recipe.stem])
        training_args = next(g for g in groups if type(g).__name__ == "SAMIConfig")
        assert training_args.output_dir.startswith("runs/"), recipe  # each recipe names its run folder


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_a_config_and_keeps_its_examples(command):
    """`--config` on every command, and `--help` prints the docstring's commands line by line."""
    module = importlib.import_module(f"sami.scripts.{command}")
    help_text = module.make_parser().format_help()
    assert "--config CONFIG" in help_text
    examples = [line for line in module.__doc__.splitlines() if line.lstrip().startswith(("sami ", "accelerate "))]
    assert examples and all(line in help_text for line in examples)


def test_command_arguments_name_what_is_missing():
    from sami.config.commands import ReportArgs, TrainDataArgs

    with pytest.raises(ConfigError, match="give --run_dir"):
        ReportArgs()
    with pytest.raises(ConfigError, match="give --generations"):
        TrainDataArgs()
    assert ReportArgs(run_dir="runs/demo").output_dir is None  # build_report's default: RUN_DIR/report
