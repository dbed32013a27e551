"""micwire: live microphone audio from one machine to another.

The product lives in three packages: :mod:`micwire.common` (pure: wire format, codecs,
framing, jitter buffer, ...), :mod:`micwire.sender` and :mod:`micwire.receiver` (thin
shells around devices, sockets and files); :mod:`micwire.app` is the application on top
of them: the ``micwire`` command (:mod:`micwire.app.cli`) and the demo. This folder, the
repository's root, is the ``micwire`` package itself, so every import inside the product
is relative and resolves to a file on disk.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["__version__"]


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
    raise AttributeError(f"module 'micwire' has no attribute {name!r}")
