"""Principle files (:mod:`sami.principles.io`) and the principle writer (:mod:`sami.principles.writer`)."""

from sami.principles.io import (
    Principle,
    PrincipleFileError,
    PrincipleSet,
    builtin_principle_names,
    load_principles,
    save_principles,
)
from sami.principles.writer import PrincipleWriterError, obtain_principles, write_principles

__all__ = [
    "Principle",
    "PrincipleFileError",
    "PrincipleSet",
    "PrincipleWriterError",
    "builtin_principle_names",
    "load_principles",
    "obtain_principles",
    "save_principles",
    "write_principles",
]
