"""Reading text files sami is given (YAML, CSV, TXT): UTF-8, or an error that names the file and line.

Python's own error ("'utf-8' codec can't decode byte 0x80 in position 128") names neither the
file nor the line; :func:`read_utf8` raises the caller's :class:`~sami.errors.SamiError` subclass
with both, and with the fix.
"""

from __future__ import annotations

from pathlib import Path

from sami.errors import SamiError


def read_utf8(path: str | Path, what: str, error: type[SamiError]) -> str:
    """The text of ``path``; a file that is not UTF-8 raises ``error`` naming ``what``, the file and the line.

    ``what`` is how the message names the file (``"principle file"``).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        raise error(not_utf8_message(path, data, decode_error, what)) from None


def not_utf8_message(path: str | Path, data: bytes, decode_error: UnicodeDecodeError, what: str) -> str:
    """The message for ``data`` (the contents of ``path``) failing to decode as UTF-8."""
    line = data.count(b"\n", 0, decode_error.start) + 1
    return (
        f"{what} {path}, line {line}: not UTF-8 text (byte 0x{data[decode_error.start]:02x} at offset "
        f"{decode_error.start}); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    )
