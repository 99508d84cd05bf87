"""Command-line parsing over flat dataclasses, with a YAML ``--config`` whose keys the flags override.

    sami run --config recipes/demo_cpu.yaml --learning_rate 1e-5

The YAML holds flat keys, the same names as the flags; an unknown key is an error that lists
the nearest valid names, so a typo never silently falls back to a default. Every value is
checked before any work: a YAML value against its field's type, every value against the
bounds and path kinds of :mod:`sami.config.checks`; a bad one is a :class:`ConfigError` naming
the flag (or the file, line and key), as is an argparse error and a ``ValueError`` of a
dataclass's own checks (``TrainingArguments`` among them).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Union

import yaml
from transformers import HfArgumentParser

from sami.config.checks import path_problem, violation
from sami.errors import ConfigError, SamiError
from sami.textfile import read_utf8

RECIPES_DIR = Path(__file__).parent / "recipes"


def resolve_config_path(config: str) -> Path:
    """A YAML path, or the name of a shipped recipe (``demo_cpu``)."""
    path = Path(config)
    if path.is_dir():
        raise ConfigError(f"--config {config} is a folder; give a YAML file or a shipped recipe name")
    if path.exists():
        return path
    recipe = RECIPES_DIR / f"{config.removesuffix('.yaml')}.yaml"
    if recipe.exists():
        return recipe
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"config {config!r} not found; give a YAML path or a shipped recipe name ({names})")


# ---------------------------------------------------------------------------------- the YAML file


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (not the last one winning)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = lines.get(key)
                except TypeError:  # an unhashable key; the base class says so
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first on line {first})", key_node.start_mark
                    )
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


@dataclass(frozen=True)
class ConfigFile:
    """The flat keys of a ``--config`` file, with the line of each key (for messages)."""

    path: Path
    values: dict[str, Any]
    lines: dict[str, int]

    def where(self, key: str) -> str:
        """``path, line N: key`` for messages."""
        return f"{self.path}, line {self.lines.get(key, '?')}: {key}"

    @classmethod
    def load(cls, config: str) -> ConfigFile:
        path = resolve_config_path(config)
        text = read_utf8(path, "config file", ConfigError)
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            values = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"{path}{where}: not valid YAML ({problem}); fix the syntax") from None
        finally:
            loader.dispose()
        if values is None:
            return cls(path, {}, {})
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}: expected a mapping of flat keys (key: value lines), got {type(values).__name__}"
            )
        lines = {key_node.value: key_node.start_mark.line + 1 for key_node, _ in node.value}
        return cls(path, values, lines)


# ---------------------------------------------------------------------------------- value types


class _Mismatch(Exception):
    """A YAML value is not of its field's type; the message is what was expected."""


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "empty (null)"}
    return names.get(type(value), f"a {type(value).__name__}")


def _coerce(value: Any, annotation: Any) -> Any:
    """``value`` (from YAML) as a value of the field type ``annotation``; raises :class:`_Mismatch`.

    Numbers written as text (``1e-5``, which YAML reads as a string) become numbers, a scalar
    where a list belongs becomes a one-item list, and a number or date where text belongs becomes
    its text. Types other than bool, int, float, str, ``Literal``, ``list[...]`` and their
    optional forms (dicts, unions of several types) are left to the dataclass.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if value is None and len(members) < len(args):
            return None
        return _coerce(value, members[0]) if len(members) == 1 else value
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch(f"one of {', '.join(map(repr, args))}")
    if origin is list or annotation is list:
        if value is None:
            raise _Mismatch("a list (write [] for none)")
        item = args[0] if args else Any
        return [_coerce(v, item) for v in (value if isinstance(value, list) else [value])]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise _Mismatch("true or false")
    if annotation in (int, float):
        if isinstance(value, int if annotation is int else (int, float)) and not isinstance(value, bool):
            return annotation(value)
        if isinstance(value, str):
            try:
                return annotation(value)
            except ValueError:
                pass
        raise _Mismatch("an integer" if annotation is int else "a number")
    if annotation is str:
        if value is None or isinstance(value, str):
            return value  # null: the field's own "none" (an empty --judge_api_key_env, say)
        if isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch("a string")
    return value


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of a command's description (its usage examples)."""


class SamiParser(HfArgumentParser):
    """``HfArgumentParser`` plus ``--config FILE.yaml``; flags given on the command line win."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        self._drop_kebab_aliases()
        # argparse takes "-1e-5" for an option (it knows only "-1" and "-0.5" as negative numbers)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        self.add_argument("--config", default=None, help="YAML file (or shipped recipe name) with flat keys; flags override it")
        self._field_types = {}
        for dtype in self.dataclass_types:
            hints = typing.get_type_hints(dtype)
            self._field_types.update({f.name: hints[f.name] for f in dataclasses.fields(dtype) if f.init})

    def _drop_kebab_aliases(self) -> None:
        """``HfArgumentParser`` adds ``--max-steps`` beside ``--max_steps``; sami has one spelling per flag."""
        for action in self._actions:
            kebab = [s for s in action.option_strings if s.startswith("--") and "-" in s[2:]]
            for option in kebab:
                action.option_strings.remove(option)
                del self._option_string_actions[option]

    def error(self, message: str) -> NoReturn:
        """An argparse error (a bad value, an invalid choice) as a one-line :class:`ConfigError`, not a usage dump."""
        raise ConfigError(f"{message}; see `{self.prog} --help`")

    def parse_args_and_config(self, args: list[str] | None = None) -> tuple:
        """Parse ``args`` into the dataclasses, with defaults taken from ``--config`` when given."""
        args = list(sys.argv[1:] if args is None else args)
        namespace, _ = self.parse_known_args(args)
        config = ConfigFile.load(namespace.config) if namespace.config else None
        if config is not None:
            self._apply(config)
        namespace, rest = self.parse_known_args(args)
        if rest:
            raise ConfigError(f"unrecognised arguments: {' '.join(rest)}; see --help")
        self._check(vars(namespace), args, config)
        return self._dataclasses(vars(namespace))

    def _apply(self, config: ConfigFile) -> None:
        """The file's keys become the parser's defaults, each checked against its field's type."""
        known = {action.dest for action in self._actions}
        unknown = sorted((k for k in config.values if k not in known), key=str)
        if unknown:
            hints = {k: difflib.get_close_matches(str(k), known, n=1) for k in unknown}
            detail = ", ".join(f"{k} (did you mean {h[0]!r}?)" if h else k for k, h in hints.items())
            raise ConfigError(f"{config.path}: unknown keys: {detail}")
        actions = {action.dest: action for action in self._actions}
        values = {}
        for key, value in config.values.items():
            try:
                values[key] = _coerce(value, self._field_types[key]) if key in self._field_types else value
            except _Mismatch as expected:
                raise ConfigError(f"{config.where(key)}: {value!r} is {_kind(value)}, expected {expected}") from None
            choices = actions[key].choices
            items = values[key] if isinstance(values[key], list) else [values[key]]
            if choices and any(item is not None and item not in choices for item in items):
                # argparse checks the choices of a flag, not of a default
                raise ConfigError(f"{config.where(key)}: {value!r} is not one of {', '.join(map(str, choices))}")
        self.set_defaults(**values)

    def _check(self, values: dict[str, Any], args: list[str], config: ConfigFile | None) -> None:
        """Refuse a value out of bounds or a path of the wrong kind, naming the flag or the YAML key it came from."""
        for name, value in values.items():
            problem = violation(name, value) or path_problem(name, value)
            if problem is None:
                continue
            given = any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in args)
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            if config is not None and name in config.values and not given:
                raise ConfigError(f"{config.where(name)}: {shown} {problem}")
            raise ConfigError(f"--{name} {shown}: {problem}")

    def _dataclasses(self, values: dict[str, Any]) -> tuple:
        """One instance per dataclass; a ``ValueError`` of their checks becomes a :class:`ConfigError`."""
        outputs = []
        for dtype in self.dataclass_types:
            inputs = {f.name: values[f.name] for f in dataclasses.fields(dtype) if f.init and f.name in values}
            try:
                outputs.append(dtype(**inputs))
            except SamiError:
                raise
            except ValueError as error:
                raise ConfigError(f"{error}; check that flag (or its key in the --config file)") from None
        return tuple(outputs)
