"""micwire: live microphone audio from one machine to another.

The product lives in three packages: :mod:`micwire.common` (pure: wire format, codecs,
framing, jitter buffer, ...), :mod:`micwire.sender` and :mod:`micwire.receiver` (thin
shells around devices, sockets and files); :mod:`micwire.app` is the application on top
of them: the ``micwire`` command (:mod:`micwire.app.cli`) and the demo. This folder, the
repository's root, is the ``micwire`` package itself, so every import inside the product
is relative and resolves to a file on disk.

For scripts: ``from micwire import to_bytes, from_bytes, write, read`` (NumPy arrays to and
from WAV/MP3/FLAC/Ogg/raw PCM, in memory or in files).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app.audiofiles import read, write
    from .common.audiofile import from_bytes, to_bytes

__all__ = ["__version__", "from_bytes", "read", "to_bytes", "write"]
#: The scripting API (arrays to and from audio bytes and files), where each lives. Imported
#: on first use: ``import micwire.common.protocol`` runs this file too, and must stay light.
_LAZY = {
    "to_bytes": "common.audiofile",
    "from_bytes": "common.audiofile",
    "write": "app.audiofiles",
    "read": "app.audiofiles",
}


@cache
def _version() -> str:
    """The version, defined once: in pyproject.toml (read from the installed metadata; a
    lazy import, so the pure packages below stay free of what importlib.metadata loads)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("micwire")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'micwire' has no attribute {name!r}")
