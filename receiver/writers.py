"""The files of a recording: one writer per format, and names that never overwrite."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ..common.audiofile import FileFormat
from .mp3 import Mp3Writer
from .wav import WavWriter

log = logging.getLogger("micwire.receiver")
Samples = npt.NDArray[np.int16]


class Writer(Protocol):
    def write(self, samples: Samples) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SoundfileWriter:
    """A FLAC or Ogg file written by libsndfile (through soundfile)."""

    def __init__(self, path: Path, fmt: FileFormat, rate_hz: int, channels: int) -> None:
        self._file = sf.SoundFile(
            path,
            "w",
            samplerate=rate_hz,
            channels=channels,
            format=fmt.container,
            subtype=fmt.subtype,
        )

    def write(self, samples: Samples) -> None:
        try:
            self._file.write(samples)
        except sf.LibsndfileError as exc:
            raise self._detailed(exc) from exc

    def flush(self) -> None:
        """Make what was written readable by another process, or after this one is killed:
        libsndfile flushes its encoder's buffers."""
        try:
            self._file.flush()
        except sf.LibsndfileError as exc:
            raise self._detailed(exc) from exc

    def _detailed(self, exc: sf.LibsndfileError) -> OSError:
        """libsndfile's own message for the file ("System error : No space left on
        device."), which soundfile's exception reduces to "System error."."""
        try:
            text = sf._ffi.string(sf._snd.sf_strerror(self._file._file)).decode()
        except AttributeError:
            text = str(exc)
        return OSError(text.removeprefix("System error : ").rstrip("."))

    def close(self) -> None:
        self._file.close()


def create_unique(directory: Path, filename: str) -> Path:
    """Create ``filename`` in ``directory`` without ever overwriting: add -2, -3, ...,
    and past -99 a random suffix (so a crowd of look-alike names cannot use them up)."""
    stem, ext = os.path.splitext(filename)
    for n in range(1, 200):
        suffix = "" if n == 1 else f"-{n}" if n < 100 else f"-{secrets.token_hex(4)}"
        path = directory / f"{stem}{suffix}{ext}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot find a free name for {filename} in {directory}")


def open_writer(path: Path, fmt: FileFormat, rate_hz: int, channels: int) -> Writer:
    if fmt.name == "wav":  # plain PCM that every reader opens, RF64 past 4 GiB (receiver/wav.py)
        return WavWriter(path, rate_hz, channels)
    if fmt.name == "mp3":  # LAME directly: gapless, crash-safe, cheaper (receiver/mp3.py)
        return Mp3Writer(path, rate_hz, channels)
    return SoundfileWriter(path, fmt, rate_hz, channels)
