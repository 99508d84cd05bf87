"""Principle files: read, validate and write the principles a constitution is made of.

A principle file is YAML (or JSON) in this shape, whether written by hand or by
``sami principles``::

    task: Summarise Reddit posts.          # optional, free text
    principles:
      - name: concise
        definition: The summary is short and to the point.
        antithesis: The summary is long-winded and repeats itself.
        split: train                       # train (default) or eval (held out)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from sami.errors import SamiError
from sami.textfile import read_utf8

Split = Literal["train", "eval"]


class PrincipleFileError(SamiError, ValueError):
    """A principle file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Principle:
    """One behavioural principle and its opposite.

    Args:
        name: short identifier, unique within a file (``"concise"``).
        definition: the principle stated as an instruction or property.
        antithesis: the opposite principle, used to build negative constitutions.
        split: ``"train"`` for principles used in training, ``"eval"`` for held-out ones.
    """

    name: str
    definition: str
    antithesis: str
    split: Split = "train"


@dataclass(frozen=True)
class PrincipleSet:
    """The principles of one task, in file order."""

    principles: tuple[Principle, ...]
    task: str = ""
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate_principles(self.principles)

    def __len__(self) -> int:
        return len(self.principles)

    def __iter__(self):
        return iter(self.principles)

    def by_split(self, split: Split) -> tuple[Principle, ...]:
        return tuple(p for p in self.principles if p.split == split)

    def get(self, name: str) -> Principle:
        for principle in self.principles:
            if principle.name == name:
                return principle
        raise KeyError(f"no principle named {name!r}; known: {[p.name for p in self.principles]}")


def validate_principles(principles: tuple[Principle, ...], source: str = "principles") -> None:
    """Raise :class:`PrincipleFileError` naming the first problem found."""
    if not principles:
        raise PrincipleFileError(f"{source}: no principles given; add at least one under 'principles:'")
    seen_names: set[str] = set()
    seen_texts: set[str] = set()
    for index, principle in enumerate(principles):
        where = f"{source}: principle {index + 1} ({principle.name!r})"
        for key in ("name", "definition", "antithesis"):
            value = getattr(principle, key)
            if not isinstance(value, str) or not value.strip():
                raise PrincipleFileError(f"{where}: '{key}' is empty; every principle needs a non-empty {key}")
        if principle.split not in ("train", "eval"):
            raise PrincipleFileError(f"{where}: split must be 'train' or 'eval', got {principle.split!r}")
        if principle.name in seen_names:
            raise PrincipleFileError(f"{where}: duplicate name; give each principle a unique name")
        text = principle.definition.strip().lower()
        if text in seen_texts:
            raise PrincipleFileError(f"{where}: duplicate definition of an earlier principle; remove one")
        if text == principle.antithesis.strip().lower():
            raise PrincipleFileError(f"{where}: the antithesis repeats the definition; write its opposite")
        seen_names.add(principle.name)
        seen_texts.add(text)


def principles_from_dict(data: dict, source: str = "principles") -> PrincipleSet:
    """Build a :class:`PrincipleSet` from the parsed file contents."""
    if not isinstance(data, dict) or not isinstance(data.get("principles"), list):
        raise PrincipleFileError(
            f"{source}: expected a mapping with a 'principles:' list of "
            "{name, definition, antithesis[, split]} entries"
        )
    principles = []
    for index, entry in enumerate(data["principles"]):
        if not isinstance(entry, dict):
            raise PrincipleFileError(f"{source}: principle {index + 1} is not a mapping of name/definition/antithesis")
        unknown = set(entry) - {"name", "definition", "antithesis", "split"}
        if unknown:
            raise PrincipleFileError(f"{source}: principle {index + 1} has unknown keys {sorted(unknown)}")
        missing = {"name", "definition", "antithesis"} - set(entry)
        if missing:
            raise PrincipleFileError(f"{source}: principle {index + 1} lacks {sorted(missing)}")
        for key in ("name", "definition", "antithesis", "split"):
            if key in entry and not isinstance(entry[key], str):
                raise PrincipleFileError(
                    f"{source}: principle {index + 1}: '{key}' is {entry[key]!r} ({type(entry[key]).__name__}), "
                    f"not text; write the {key} as a string"
                )
        principles.append(
            Principle(
                name=entry["name"].strip(),
                definition=entry["definition"].strip(),
                antithesis=entry["antithesis"].strip(),
                split=entry.get("split", "train"),
            )
        )
    validate_principles(tuple(principles), source)
    task = data.get("task")
    if task is not None and not isinstance(task, str):
        raise PrincipleFileError(
            f"{source}: 'task' is {task!r} ({type(task).__name__}), not text; write it as a string"
        )
    metadata = {k: v for k, v in data.items() if k not in ("principles", "task")}
    return PrincipleSet(principles=tuple(principles), task=task or "", metadata=metadata)


def load_principles(path: str | Path) -> PrincipleSet:
    """Read a principle file (YAML or JSON), or a built-in one by name (see :func:`builtin_principles`)."""
    path_obj = Path(path)
    if not path_obj.exists():
        builtin = BUILTIN_DIR / f"{path}.yaml"
        if builtin.exists():
            path_obj = builtin
        else:
            raise PrincipleFileError(
                f"principle file {str(path)!r} not found; give a path to a YAML/JSON file or a built-in name "
                f"({', '.join(builtin_principle_names())})"
            )
    if path_obj.is_dir():
        raise PrincipleFileError(f"principle file {str(path)!r} is a folder; give a YAML/JSON file or a built-in name")
    text = read_utf8(path_obj, "principle file", PrincipleFileError)
    try:
        data = json.loads(text) if path_obj.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise PrincipleFileError(
            f"{path_obj}, line {error.lineno}: not valid JSON ({error.msg}); fix the syntax"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PrincipleFileError(f"{path_obj}{where}: not valid YAML ({problem}); fix the syntax") from None
    return principles_from_dict(data, source=str(path_obj))


def save_principles(principle_set: PrincipleSet, path: str | Path) -> Path:
    """Write a principle file that :func:`load_principles` reads back unchanged."""
    path_obj = Path(path)
    if path_obj.is_dir():
        raise PrincipleFileError(f"{path_obj} is a folder; give the path of the principle file to write")
    path_obj.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {}
    if principle_set.task:
        data["task"] = principle_set.task
    data.update(principle_set.metadata)
    data["principles"] = [asdict(p) for p in principle_set.principles]
    if path_obj.suffix == ".json":
        path_obj.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        path_obj.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return path_obj


BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_principle_names() -> list[str]:
    """Names of the principle files shipped with sami (``hh``, ``tldr``, ``tldr_diverse``, ...)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
