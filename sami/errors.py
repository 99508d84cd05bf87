"""sami's own errors: one base class whose message names the problem and the fix.

Library code raises a :class:`SamiError` subclass (usually also a builtin such as ``ValueError``,
so callers that expect the builtin keep working). Only the command-line entry point
(:mod:`sami.cli`) catches it: it prints ``sami <command>: error: <message>`` on one line and
exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SamiError(Exception):
    """An error the user can fix; the message says what is wrong and what to do."""


class ConfigError(SamiError, ValueError):
    """A config file or flag is unknown, missing or inconsistent with another."""


class MissingFileError(SamiError, FileNotFoundError):
    """A file or folder sami needs does not exist."""
