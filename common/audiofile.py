"""NumPy arrays <-> encoded audio (WAV, MP3, FLAC, Ogg Vorbis, raw PCM) in one call.

The everyday scripting case people reach for pydub + ffmpeg for::

    from micwire import to_bytes, write
    mp3 = to_bytes(samples, 48000, "mp3")      # bytes, ready to send or store
    write("take1.flac", samples, 48000)        # format from the extension

libsndfile (bundled in the soundfile wheels) does the encoding; no ffmpeg needed. Arrays
are ``(frames,)`` or ``(frames, channels)``, either int16 or float in [-1, 1]. Anything
else is refused with :class:`~micwire.common.errors.AudioFormatError` saying what to change.

This module is the in-memory half (bytes in, bytes out) and the rules both halves share
(:func:`encoding`); reading and writing files by path is :mod:`micwire.app.audiofiles`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import soundfile as sf

from . import mp3
from .errors import AudioFormatError

MAX_CHANNELS = 8


@dataclass(frozen=True)
class FileFormat:
    name: str  # our name, also the file extension
    container: str  # libsndfile major format
    subtype: str  # libsndfile subtype
    max_channels: int = MAX_CHANNELS
    rates_hz: tuple[int, ...] | None = None  # None: any rate

    def check(self, rate_hz: int, channels: int) -> None:
        if self.rates_hz is not None and rate_hz not in self.rates_hz:
            rates = ", ".join(str(r) for r in self.rates_hz)
            raise AudioFormatError(
                f"{self.name} cannot hold {rate_hz} Hz audio; use one of {rates}"
            )
        if not 1 <= rate_hz <= 655_350:
            raise AudioFormatError(f"sample rate {rate_hz} Hz is out of range")
        if not 1 <= channels <= self.max_channels:
            raise AudioFormatError(
                f"{self.name} holds 1..{self.max_channels} channels, got {channels}"
            )


FORMATS: dict[str, FileFormat] = {
    f.name: f
    for f in (
        FileFormat("wav", "WAV", "PCM_16"),
        FileFormat("flac", "FLAC", "PCM_16"),
        FileFormat("mp3", "MP3", "MPEG_LAYER_III", max(mp3.CHANNELS), mp3.RATES_HZ),
        FileFormat("ogg", "OGG", "VORBIS", 8),
        FileFormat("raw", "RAW", "PCM_16"),
    )
}


#: The formats a receiver records to (``--format``): the others are for scripts.
RECORDING_FORMATS = ("wav", "mp3", "flac", "ogg")


def get_format(name: str) -> FileFormat:
    try:
        return FORMATS[name.lower().lstrip(".")]
    except KeyError:
        raise AudioFormatError(
            f"unknown audio format {name!r}; use one of {', '.join(FORMATS)}"
        ) from None


def as_frames(array: Any) -> npt.NDArray[np.int16]:
    """Check an array and return it as int16 of shape ``(frames, channels)``."""
    if not isinstance(array, np.ndarray):
        raise AudioFormatError(f"expected a NumPy array of samples, got {type(array).__name__}")
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim != 2:
        raise AudioFormatError(f"expected shape (frames,) or (frames, channels), got {array.shape}")
    if array.shape[1] > MAX_CHANNELS:
        hint = "; it looks channels-first: pass array.T" if array.shape[0] <= MAX_CHANNELS else ""
        raise AudioFormatError(f"array of shape {array.shape} has {array.shape[1]} channels{hint}")
    if array.shape[1] == 0:
        raise AudioFormatError("array has no channels")
    if array.dtype == np.int16:
        return cast(npt.NDArray[np.int16], array)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise AudioFormatError("float samples contain NaN or infinity")
        scaled = np.rint(np.clip(array, -1.0, 1.0) * 32767.0)
        return cast(npt.NDArray[np.int16], scaled.astype(np.int16))
    raise AudioFormatError(
        f"{array.dtype} samples are ambiguous: convert to int16, or to float in [-1, 1]"
    )


def _check_rate(rate_hz: Any) -> int:
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, np.integer)):
        raise AudioFormatError(f"sample rate must be an integer number of Hz, got {rate_hz!r}")
    return int(rate_hz)


def encoding(array: Any, rate_hz: int, fmt: FileFormat) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    """``(samples, settings)``: the samples to hand libsndfile for ``fmt`` and the
    ``soundfile.SoundFile`` settings to open it with, once every argument is checked."""
    frames = as_frames(array)
    rate = _check_rate(rate_hz)
    fmt.check(rate, frames.shape[1])
    settings = {
        "samplerate": rate,
        "channels": frames.shape[1],
        "format": fmt.container,
        "subtype": fmt.subtype,
    }
    # libsndfile's MP3 encoder garbles int16 stereo (a byte count passed as a sample
    # count); float input is exact
    return (frames.astype(np.float32) / 32768.0 if fmt.name == "mp3" else frames), settings


def to_bytes(array: Any, rate_hz: int, format: str = "wav") -> bytes:
    """Encode samples as a complete file in memory (or headerless PCM for ``raw``)."""
    samples, settings = encoding(array, rate_hz, get_format(format))
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", **settings) as f:
        f.write(samples)
    return buffer.getvalue()


def from_bytes(
    data: bytes, format: str | None = None, rate_hz: int | None = None, channels: int | None = None
) -> tuple[npt.NDArray[np.int16], int]:
    """Decode a file held in memory to ``(int16 samples (frames, channels), rate)``.

    The format is detected from the content; ``raw`` PCM needs ``rate_hz`` and ``channels``.
    """
    kwargs: dict[str, Any] = {}
    if format is not None and get_format(format).name == "raw":
        if rate_hz is None or channels is None:
            raise AudioFormatError("raw PCM needs rate_hz and channels to be given")
        kwargs = {
            "samplerate": _check_rate(rate_hz),
            "channels": channels,
            "format": "RAW",
            "subtype": "PCM_16",
            "endian": "LITTLE",
        }
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True, **kwargs)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFormatError(f"cannot decode audio: {exc}") from exc
    return samples, int(rate)
