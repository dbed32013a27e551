"""Names that reach the file system or a screen: stream names and recording file names.

A stream is known by its name exactly as the sender sent it; only file names are derived
(and may collide: ``a/b`` and ``a?b`` both record as ``a_b-…``, made unique with ``-2``).
What a person reads (the terminal table; the pages do the same in ``web/util.js``) shows
the characters that hide themselves or rearrange the text around them as escapes.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone

#: Longest sanitised name, in bytes of UTF-8 (file names are limited to 255 bytes; the
#: time stamp, part number and extension need the rest).
MAX_NAME_BYTES = 120
_KEEP = "._-"
#: General categories a reader cannot see, or that move the text around them: controls
#: (C0, C1), format characters (bidi overrides, embeddings, isolates and marks, zero-width
#: spaces and joiners, word joiner, invisible operators, BOM, tags), lone surrogates and the
#: line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Letters that draw nothing (Hangul fillers): a name made of them looks empty.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


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


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def visible(text: str) -> str:
    """``text`` as a person should see it: every character that is invisible or changes
    the direction or joining of the text around it written as an escape, ``\\u202E``
    (``\\U000E0041`` beyond the BMP). A stream named ``"\\u202egnp.exe"`` then reads
    ``\\u202Egnp.exe``, not ``exe.png``; ``кухня`` and ``研究室`` stay as they are. The same
    rule as ``visible()`` in ``receiver/web/util.js``."""
    if text.isprintable() and _BLANK_LETTERS.isdisjoint(text):  # the common case, cheaply:
        return text  # every hidden category is unprintable
    return "".join(
        _escape(ch)
        if unicodedata.category(ch) in _HIDDEN_CATEGORIES or ch in _BLANK_LETTERS
        else ch
        for ch in text
    )
