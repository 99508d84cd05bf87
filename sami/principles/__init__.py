from sami.principles.io import (
    Principle,
    PrincipleFileError,
    PrincipleSet,
    builtin_principle_names,
    load_principles,
    save_principles,
)

__all__ = [
    "Principle",
    "PrincipleFileError",
    "PrincipleSet",
    "builtin_principle_names",
    "load_principles",
    "save_principles",
]
