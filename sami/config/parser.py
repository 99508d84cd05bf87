"""Command-line parsing over flat dataclasses, with a YAML ``--config`` whose keys the flags override.

    sami run --config recipes/demo_cpu.yaml --learning_rate 1e-5

The YAML holds flat keys, the same names as the flags; an unknown key is an error that lists
the nearest valid names, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from sami.errors import ConfigError

RECIPES_DIR = Path(__file__).parent / "recipes"


def resolve_config_path(config: str) -> Path:
    """A YAML path, or the name of a shipped recipe (``demo_cpu``)."""
    path = Path(config)
    if path.exists():
        return path
    recipe = RECIPES_DIR / f"{config.removesuffix('.yaml')}.yaml"
    if recipe.exists():
        return recipe
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"config {config!r} not found; give a YAML path or a shipped recipe name ({names})")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of a command's description (its usage examples)."""


class SamiParser(HfArgumentParser):
    """``HfArgumentParser`` plus ``--config FILE.yaml``; flags given on the command line win."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        self._drop_kebab_aliases()
        self.add_argument("--config", default=None, help="YAML file (or shipped recipe name) with flat keys; flags override it")

    def _drop_kebab_aliases(self) -> None:
        """``HfArgumentParser`` adds ``--max-steps`` beside ``--max_steps``; sami has one spelling per flag."""
        for action in self._actions:
            kebab = [s for s in action.option_strings if s.startswith("--") and "-" in s[2:]]
            for option in kebab:
                action.option_strings.remove(option)
                del self._option_string_actions[option]

    def parse_args_and_config(self, args: list[str] | None = None) -> tuple:
        """Parse ``args`` into the dataclasses, with defaults taken from ``--config`` when given."""
        namespace, _ = self.parse_known_args(args)
        if namespace.config:
            path = resolve_config_path(namespace.config)
            values = yaml.safe_load(path.read_text()) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: expected a mapping of flat keys, got {type(values).__name__}")
            known = {action.dest for action in self._actions}
            unknown = sorted(set(values) - known)
            if unknown:
                hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
                detail = ", ".join(f"{k} (did you mean {h[0]!r}?)" if h else k for k, h in hints.items())
                raise ConfigError(f"{path}: unknown keys: {detail}")
            self.set_defaults(**values)
        *outputs, rest = self.parse_args_into_dataclasses(args, return_remaining_strings=True)
        if rest:
            raise ConfigError(f"unrecognised arguments: {' '.join(rest)}; see --help")
        return tuple(o for o in outputs if hasattr(o, "__dataclass_fields__"))  # drop the --config namespace
