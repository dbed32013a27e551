"""Names that reach the file system: stream names and recording file names."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone

MAX_NAME_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_stream_name(name: str) -> str:
    """A file-name-safe version of ``name``: ASCII letters, digits, ``. _ -`` only.

    Path separators, ``..``, control characters and leading dots cannot survive, so a
    name can never point outside the record directory nor make a hidden file.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    safe = _UNSAFE.sub("_", ascii_name).strip("._-")[:MAX_NAME_CHARS].strip("._-")
    return safe or "stream"


def recording_filename(stream: str, start: datetime, extension: str) -> str:
    """``<sanitised name>-<UTC start, YYYYmmddTHHMMSSZ>.<ext>``."""
    stamp = start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{sanitize_stream_name(stream)}-{stamp}.{extension}"
