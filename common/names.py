"""Names that reach the file system: stream names and recording file names.

A stream is known by its name exactly as the sender sent it; only file names are derived
(and may collide: ``a/b`` and ``a?b`` both record as ``a_b-…``, made unique with ``-2``).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone

#: Longest sanitised name, in bytes of UTF-8 (file names are limited to 255 bytes; the
#: time stamp, part number and extension need the rest).
MAX_NAME_BYTES = 120
_KEEP = "._-"


def _safe_char(ch: str) -> str:
    # letters, digits and combining marks of any script; everything else (path separators,
    # control and format characters, spaces, punctuation) becomes "_"
    return ch if ch in _KEEP or unicodedata.category(ch)[0] in "LNM" else "_"


def sanitize_stream_name(name: str) -> str:
    """A file-name-safe version of ``name``: letters and digits of any script, ``. _ -``.

    Path separators, ``..``, control characters and leading dots cannot survive, so a
    name can never point outside the record directory nor make a hidden file. ``кухня``
    stays ``кухня``; runs of anything else become one ``_``.
    """
    text = "".join(_safe_char(ch) for ch in unicodedata.normalize("NFC", name))
    while "__" in text:
        text = text.replace("__", "_")
    data = text.strip("._-").encode("utf-8")[:MAX_NAME_BYTES]
    safe = data.decode("utf-8", "ignore").strip("._-")
    return safe or "stream"


def recording_filename(stream: str, start: datetime, extension: str) -> str:
    """``<sanitised name>-<UTC start, YYYYmmddTHHMMSSZ>.<ext>``."""
    stamp = start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{sanitize_stream_name(stream)}-{stamp}.{extension}"
