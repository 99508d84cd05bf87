import importlib
from dataclasses import dataclass, field
from typing import Literal

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


@dataclass
class Typed:
    rate: float = 0.1
    count: int = 1
    cap: int | None = None
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)
    version: str | None = None
    steps: list[int] | None = None


def parse_yaml(tmp_path, text: str, *flags: str) -> Typed:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    (args,) = SamiParser([Typed]).parse_args_and_config(["--config", str(config), *flags])
    return args


def test_yaml_values_take_their_fields_types(tmp_path):
    text = "rate: 1e-5\ncount: '3'\ncap: null\nflag: yes\nmode: b\ntags: one\nversion: 2024-02-15\nsteps: [1, 2]\n"
    args = parse_yaml(tmp_path, text)
    assert args.rate == 1e-5 and isinstance(args.rate, float)  # YAML reads 1e-5 as text
    assert (args.count, args.cap, args.flag, args.mode) == (3, None, True, "b")
    assert args.tags == ["one"]  # a scalar where a list belongs
    assert args.version == "2024-02-15"  # YAML reads it as a date
    assert args.steps == [1, 2]
    assert parse_yaml(tmp_path, "rate: 2\n").rate == 2.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("count: [1, 2]\n", r"c.yaml, line 1: count: \[1, 2\] is a list, expected an integer"),
        ("rate: 0.1\ncount: two\n", r"line 2: count: 'two' is a string, expected an integer"),
        ("count: 2.5\n", r"count: 2.5 is a number, expected an integer"),
        ("count: true\n", r"count: True is a boolean, expected an integer"),
        ("count:\n", r"count: None is empty \(null\), expected an integer"),
        ("flag: maybe\n", r"flag: 'maybe' is a string, expected true or false"),
        ("mode: c\n", r"mode: 'c' is a string, expected one of 'a', 'b'"),
        ("tags: {a: 1}\n", r"tags: \{'a': 1\} is a mapping, expected a string"),
        ("steps: [1, x]\n", r"steps: \[1, 'x'\] is a list, expected an integer"),
        ("count: 1\ncount: 2\n",
         r"c.yaml, line 2, column 1: not valid YAML \(key 'count' given twice \(first on line 1\)\)"),
        ("count: [1\nrate: 2\n", r"c.yaml, line 2, column 5: not valid YAML"),
        ("- count\n", r"expected a mapping of flat keys"),
    ],
)
def test_a_yaml_value_of_the_wrong_type_names_the_file_line_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_yaml(tmp_path, text)


def test_argparse_errors_are_config_errors_not_usage_dumps():
    with pytest.raises(ConfigError, match=r"argument --count: invalid int value: 'two'; see `prog --help`"):
        SamiParser([Typed], prog="prog").parse_args_and_config(["--count", "two"])
    with pytest.raises(ConfigError, match=r"argument --mode: invalid choice: 'c'"):
        SamiParser([Typed]).parse_args_and_config(["--mode", "c"])


def test_negative_numbers_in_exponent_form_are_values():
    (args,) = SamiParser([Typed]).parse_args_and_config(["--rate", "-1e-5", "--count", "-2"])
    assert (args.rate, args.count) == (-1e-5, -2)


def test_bounds_name_the_flag_or_the_yaml_key(tmp_path):
    from sami.scripts import train

    parser = train.make_parser()
    with pytest.raises(ConfigError, match=r"^--gradient_accumulation_steps 0: must be >= 1"):
        parser.parse_args_and_config(["--generations", "g.jsonl", "--output_dir", "x",
                                      "--gradient_accumulation_steps", "0"])
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: x\nlearning_rate: -1.0e-5\n")
    with pytest.raises(ConfigError, match=r"c.yaml, line 2: learning_rate: -1e-05 must be >= 0"):
        train.make_parser().parse_args_and_config(["--generations", "g.jsonl", "--config", str(config)])
    # the command line overrides a bad value of the file: only the values used are checked
    groups = train.make_parser().parse_args_and_config(
        ["--generations", "g.jsonl", "--config", str(config), "--learning_rate", "1e-5"]
    )
    assert next(g for g in groups if hasattr(g, "learning_rate")).learning_rate == 1e-5


def test_a_dataclass_value_error_becomes_a_config_error():
    from sami.scripts import train

    with pytest.raises(ConfigError, match="is not a valid SchedulerType"):
        train.make_parser().parse_args_and_config(["--generations", "g.jsonl", "--output_dir", "x",
                                                   "--lr_scheduler_type", "constnt"])


def test_yaml_choices_of_a_plain_string_flag_are_checked(tmp_path):
    @dataclass
    class Choosy:
        kind: str = field(default="x", metadata={"choices": ["x", "y"]})

    config = tmp_path / "c.yaml"
    config.write_text("kind: z\n")
    with pytest.raises(ConfigError, match=r"c.yaml, line 1: kind: 'z' is not one of x, y"):
        SamiParser([Choosy]).parse_args_and_config(["--config", str(config)])
