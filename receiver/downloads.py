"""Recordings for download: a recording or sidecar, seekable (aiohttp answers range
requests), and only what the receiver wrote in its record directory."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web

from ..common.audiofile import RECORDING_FORMATS
from .access import caller_role, receiver_of, unauthorized
from .auth import MAY_WATCH

RECORDING_SUFFIXES = (*(f".{name}" for name in RECORDING_FORMATS), ".json")


async def recording(request: web.Request) -> web.StreamResponse:
    """A recording or sidecar, seekable (aiohttp answers range requests)."""
    if caller_role(request, MAY_WATCH) is None:
        return unauthorized(request, "recording")
    directory = receiver_of(request).config.record_dir
    name = request.match_info["name"]
    if (
        directory is None
        or "/" in name
        or name.startswith(".")
        or not name.endswith(RECORDING_SUFFIXES)
    ):
        raise web.HTTPNotFound()
    path = _own_file(directory, name)
    if path is None:
        raise web.HTTPNotFound()
    if re.fullmatch(r"bytes=\s*-0+\s*", request.headers.get(hdrs.RANGE, ""), re.IGNORECASE):
        # a suffix of no bytes cannot be satisfied (RFC 9110 14.1.1); aiohttp would send
        # the whole file as if it were one
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={hdrs.CONTENT_RANGE: f"bytes */{path.stat().st_size}"}
        )
    return web.FileResponse(
        path, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}
    )


def _own_file(directory: Path, name: str) -> Path | None:
    """A regular file in the record directory itself, or None: never a symlink (a
    ``link.wav`` pointing elsewhere would serve any file the receiver can read), nor
    anything whose real path leaves the directory."""
    path = directory / name
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        real = path.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL in the name (%00)
        return None
    return real if real.parent == directory.resolve() else None
