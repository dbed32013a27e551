"""Signal levels in dBFS (0 dBFS = full-scale int16)."""

from __future__ import annotations

import math

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
    """Peak and RMS over everything added since the last :meth:`read`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._peak = 0
        self._sum_squares = 0.0
        self._count = 0

    def add(self, samples: npt.NDArray[np.int16]) -> None:
        if samples.size:
            wide = samples.astype(np.int32)
            self._peak = max(self._peak, int(np.max(np.abs(wide))))
            self._sum_squares += float(np.sum(np.square(wide, dtype=np.float64)))
            self._count += samples.size

    def read(self) -> tuple[float, float]:
        """(peak dBFS, RMS dBFS) since the last read; then start over."""
        rms = math.sqrt(self._sum_squares / self._count) if self._count else 0.0
        result = (_dbfs(float(self._peak)), _dbfs(rms))
        self._reset()
        return result
