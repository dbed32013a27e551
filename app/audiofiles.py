"""Reading and writing audio files by path: the file half of :mod:`micwire.common.audiofile`
(which encodes and decodes in memory, and checks the arguments for both halves).

The user-facing API is the four functions together, ``from micwire import to_bytes,
from_bytes, write, read`` (README, "Python API").
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ..common.audiofile import encoding, get_format
from ..common.errors import AudioFormatError


def write(
    path: str | os.PathLike[str], array: Any, rate_hz: int, format: str | None = None
) -> None:
    """Write samples to ``path``; the format comes from the extension unless given."""
    fmt = get_format(format or os.path.splitext(os.fspath(path))[1] or "?")
    samples, settings = encoding(array, rate_hz, fmt)
    with sf.SoundFile(os.fspath(path), "w", **settings) as f:
        f.write(samples)


def read(path: str | os.PathLike[str]) -> tuple[npt.NDArray[np.int16], int]:
    """Read a file to ``(int16 samples (frames, channels), rate)``."""
    try:
        samples, rate = sf.read(os.fspath(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFormatError(f"cannot read {os.fspath(path)!r}: {exc}") from exc
    return samples, int(rate)
