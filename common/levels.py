"""Signal levels in dBFS (0 dBFS = full-scale int16)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

SILENCE_DBFS = -120.0
_FULL_SCALE = 32768.0


def _dbfs(amplitude: float) -> float:
    if amplitude <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(amplitude / _FULL_SCALE))


def peak_dbfs(samples: npt.NDArray[np.int16]) -> float:
    """Peak level of int16 samples; :data:`SILENCE_DBFS` for silence or no samples."""
    if samples.size == 0:
        return SILENCE_DBFS
    return _dbfs(float(np.max(np.abs(samples.astype(np.int32)))))


def rms_dbfs(samples: npt.NDArray[np.int16]) -> float:
    """RMS level of int16 samples; a full-scale square wave reads 0 dBFS."""
    if samples.size == 0:
        return SILENCE_DBFS
    return _dbfs(math.sqrt(float(np.mean(np.square(samples.astype(np.float64))))))


class LevelMeter:
    """Peak and RMS over the last ``window_s`` seconds of audio added.

    Reading never resets anything, so any number of views (terminal table, stats lines,
    metrics, web page) read the same meter without stealing from each other. Times are
    the caller's clock, in seconds.

    Cheap to feed: :meth:`add` only keeps the block; the sums are worked out when someone
    reads (a few times a second), over every block since in one go, per ``bucket_s`` of
    arrival time: one numpy call per bucket instead of several per packet.
    """

    def __init__(self, window_s: float = 1.0, bucket_s: float = 0.05) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        # (time, peak, sum of squares, sample count) per bucket of blocks added
        self._chunks: deque[tuple[float, int, float, int]] = deque()
        self._pending: list[tuple[float, npt.NDArray[np.int16]]] = []

    def add(self, samples: npt.NDArray[np.int16], now: float) -> None:
        if samples.size:
            self._pending.append((now, samples))
            if len(self._pending) >= 512:  # nobody reads: keep memory bounded anyway
                self._fold()

    def _fold(self) -> None:
        pending, self._pending = self._pending, []
        start = 0
        while start < len(pending):
            first = pending[start][0]
            end = start + 1
            while end < len(pending) and pending[end][0] - first < self.bucket_s:
                end += 1
            flat = np.concatenate([block.ravel() for _, block in pending[start:end]])
            wide = flat.astype(np.float32)
            peak = int(max(-int(flat.min()), int(flat.max())))
            self._chunks.append((pending[end - 1][0], peak, float(np.dot(wide, wide)), flat.size))
            start = end
        horizon = (self._chunks[-1][0] if self._chunks else 0.0) - max(self.window_s, 10.0)
        while self._chunks and self._chunks[0][0] < horizon:
            self._chunks.popleft()

    def read(self, now: float, window_s: float | None = None) -> tuple[float, float]:
        """(peak dBFS, RMS dBFS) over the last ``window_s`` (default: the meter's window)."""
        if self._pending:
            self._fold()
        since = now - (self.window_s if window_s is None else window_s)
        peak, total, count = 0, 0.0, 0
        for at, chunk_peak, squares, n in reversed(self._chunks):
            if at < since:
                break
            peak = max(peak, chunk_peak)
            total += squares
            count += n
        rms = math.sqrt(total / count) if count else 0.0
        return _dbfs(float(peak)), _dbfs(rms)
