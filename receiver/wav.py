"""A WAV recording on disk: every reader opens it, it grows past 4 GiB, a crash spares it.

The header (micwire.common.wav) is a plain 16-bit PCM WAV while the file is under 4 GiB
and RF64 beyond. Samples are written straight to the file (no user-space buffer) and the
header is rewritten after every write, so a receiver killed at any moment leaves a file
whose header counts what is in it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..common import wav


class WavWriter:
    def __init__(self, path: Path, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self.frames = 0
        self._block = channels * wav.BITS // 8
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._write_all(wav.header(rate_hz, channels, 0))
        except OSError:
            os.close(self._fd)
            raise

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        data = np.ascontiguousarray(samples, dtype="<i2")
        try:
            self._write_all(data.tobytes())
            self.frames += len(data)
        except OSError:
            # a full disk may take part of a write: count the whole frames it holds, and
            # cut the rest, so the header and the data agree
            end = os.lseek(self._fd, 0, os.SEEK_END)
            audio = wav.header_size(self.channels)
            self.frames = max(0, end - audio) // self._block
            os.ftruncate(self._fd, audio + self.frames * self._block)
            os.lseek(self._fd, 0, os.SEEK_END)
            raise
        finally:
            self._update_header()

    def _update_header(self) -> None:
        os.pwrite(self._fd, wav.header(self.rate_hz, self.channels, self.frames), 0)

    def flush(self) -> None:
        """Nothing to do: every write reaches the file, header included (no fsync either:
        it protects only against power loss, at a disk write a second per stream)."""

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def truncate(path: Path, frames: int) -> None:
    """Cut a WAV or RF64 file (ours, or libsndfile's from an older micwire) to ``frames``
    frames and make its header say so: the parts of a stream continued after a crash join
    exactly. A file that holds fewer frames is left alone."""
    with open(path, "r+b") as f:
        lay = wav.layout(f.read(65536))
        end = lay.audio_at + frames * lay.block_align
        if os.fstat(f.fileno()).st_size <= end:
            return
        f.truncate(end)
        for offset, data in wav.sizes(lay, frames):
            f.seek(offset)
            f.write(data)
