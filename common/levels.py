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
    """

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        # (time, peak, sum of squares, sample count) per chunk added
        self._chunks: deque[tuple[float, int, float, int]] = deque()

    def add(self, samples: npt.NDArray[np.int16], now: float) -> None:
        if samples.size:
            flat = samples.ravel().astype(np.float64)
            peak = int(max(-np.min(flat), np.max(flat)))
            self._chunks.append((now, peak, float(np.dot(flat, flat)), flat.size))
        while self._chunks and self._chunks[0][0] < now - self.window_s:
            self._chunks.popleft()

    def read(self, now: float, window_s: float | None = None) -> tuple[float, float]:
        """(peak dBFS, RMS dBFS) over the last ``window_s`` (default: the meter's window)."""
        since = now - (self.window_s if window_s is None else window_s)
        peak, total, count = 0, 0.0, 0
        for at, chunk_peak, squares, n in self._chunks:
            if at >= since:
                peak = max(peak, chunk_peak)
                total += squares
                count += n
        rms = math.sqrt(total / count) if count else 0.0
        return _dbfs(float(peak)), _dbfs(rms)
