"""Sources that make their own samples (a tone, a file) and pace themselves against an
absolute clock (no drift from sleeping late), so they behave like a live microphone."""

from __future__ import annotations

import abc
import asyncio
import os
import time
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ..common.errors import AudioFormatError, ParameterError
from ..common.framing import Block
from .source import Samples, Sink, Source, fail


class PacedSource(Source):
    """A source that makes its own samples and releases them in real time."""

    def __init__(self, rate_hz: int, channels: int, block_samples: int, clock_scale: float = 1.0):
        super().__init__(rate_hz, channels)
        self.block_samples = block_samples
        #: >1 runs the pacing clock slow, <1 fast (simulates a sender's crystal off by ppm).
        self.clock_scale = clock_scale

    @abc.abstractmethod
    def _read(self, n: int) -> Samples:
        """Up to ``n`` more samples; fewer means the source is exhausted."""

    async def run(self, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        start, start_wall = loop.time(), time.time()
        position = 0
        timer: asyncio.TimerHandle | None = None

        def schedule() -> None:
            # release each block when its last sample "has been captured", on an absolute
            # clock: one timer per block, no task
            nonlocal timer
            samples = self._read(self.block_samples)
            if len(samples) == 0:
                done.set_result(None)
                return
            due = start + (position + len(samples)) / self.rate_hz * self.clock_scale
            timer = loop.call_at(due, release, samples)

        def release(samples: Samples) -> None:
            nonlocal position
            try:
                sink(Block(position, samples, start_wall + position / self.rate_hz))
                position += len(samples)
                if len(samples) < self.block_samples:
                    done.set_result(None)
                else:
                    schedule()
            except Exception as exc:  # a timer's error would be lost: to run()
                fail(done, exc)

        schedule()
        try:
            await self._until_stopped(done)
        finally:
            if timer is not None:
                timer.cancel()


class ToneSource(PacedSource):
    """A sine tone at ``frequency_hz``, -12 dBFS, the same on every channel."""

    def __init__(
        self,
        frequency_hz: float,
        rate_hz: int,
        channels: int,
        block_samples: int,
        clock_scale: float = 1.0,
        amplitude: float = 0.25,
    ):
        if not 0 < frequency_hz < rate_hz / 2:
            raise ParameterError(
                f"tone frequency must be in 0..{rate_hz // 2} Hz, got {frequency_hz:g}"
            )
        super().__init__(rate_hz, channels, block_samples, clock_scale)
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self._position = 0
        self.description = f"tone {frequency_hz:g} Hz"
        # a whole number of cycles a second: one second, computed once, repeats exactly
        self._table: Samples | None = None
        if float(frequency_hz).is_integer():
            self._table = self._wave(0, rate_hz)

    def _wave(self, start: int, n: int) -> Samples:
        t = (start + np.arange(n)) / self.rate_hz
        wave = np.rint(np.sin(2 * np.pi * self.frequency_hz * t) * self.amplitude * 32767)
        return np.repeat(wave.astype(np.int16)[:, None], self.channels, axis=1)

    def _read(self, n: int) -> Samples:
        start, self._position = self._position, self._position + n
        table = self._table
        if table is None:
            return self._wave(start, n)
        offset = start % len(table)
        if offset + n <= len(table):
            return table[offset : offset + n]
        return np.take(table, np.arange(offset, offset + n) % len(table), axis=0)


class FileSource(PacedSource):
    """Any file soundfile reads, converted to the stream's rate (soxr) and channel count."""

    def __init__(
        self, path: str, rate_hz: int, channels: int, block_samples: int, clock_scale: float = 1.0
    ):
        import soundfile as sf

        super().__init__(rate_hz, channels, block_samples, clock_scale)
        if not os.path.isfile(path):
            raise AudioFormatError(f"cannot read audio file {path!r}: no such file")
        try:
            self._file = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioFormatError(f"cannot read audio file {path!r}: {exc}") from exc
        self.file_rate_hz = int(self._file.samplerate)
        self._resampler: Any = None
        if self.file_rate_hz != rate_hz:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.file_rate_hz, rate_hz, channels, dtype="float32", quality="HQ"
            )
        self._pending = np.zeros((0, channels), dtype=np.int16)
        self._eof = False
        self.description = f"file {path!r} ({self.file_rate_hz} Hz, {self._file.channels} ch)"

    def _map_channels(self, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        have = data.shape[1]
        if have == self.channels:
            return data
        if self.channels == 1:  # downmix to mono
            return cast(npt.NDArray[Any], data.mean(axis=1, keepdims=True).astype(data.dtype))
        return data[:, np.arange(self.channels) % have]

    def _fill(self, n: int) -> None:
        chunk = max(n, 4096)
        while len(self._pending) < n and not self._eof:
            if self._resampler is None:
                data = self._map_channels(self._file.read(chunk, dtype="int16", always_2d=True))
                self._eof = len(data) < chunk
            else:
                raw = self._map_channels(self._file.read(chunk, dtype="float32", always_2d=True))
                self._eof = len(raw) < chunk
                out = self._resampler.resample_chunk(raw, last=self._eof)
                data = np.rint(np.clip(out, -1.0, 1.0) * 32767).astype(np.int16)
            self._pending = np.concatenate([self._pending, data.reshape(-1, self.channels)])
        if self._eof:
            self._file.close()

    def _read(self, n: int) -> Samples:
        self._fill(n)
        out, self._pending = self._pending[:n], self._pending[n:]
        return out
