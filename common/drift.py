"""Clock-drift compensation for live playback (pure).

A sender's ADC and a receiver's DAC never run at exactly the same rate: tens to hundreds of
ppm apart. Left alone, the jitter buffer slowly fills (sender fast) or empties (sender
slow). :class:`DriftController` is a PI controller on the buffer's depth error, as in
roc-toolkit and SonoBus: it returns the playback *ratio* (input samples consumed per output
sample) that holds the depth at its target, and its integral term converges to the clocks'
actual ratio, reported as ``drift_ppm``. :class:`FractionalResampler` applies the ratio
with Catmull-Rom interpolation; at a ratio of exactly 1 it passes samples through unchanged.
Corrections are limited to ``max_ppm`` (2000 ppm = 3.5 cents of pitch, inaudible).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class DriftController:
    def __init__(
        self,
        rate_hz: int,
        # depth error e (ms) moves at -(ppm - drift)/1000 ms/s, so the loop is
        # s^2 + kp/1000 s + ki/1000: wn = 0.1 rad/s, damping 0.8 (settles in about a minute)
        kp_ppm_per_ms: float = 160.0,
        ki_ppm_per_ms_s: float = 10.0,
        max_ppm: float = 2000.0,
        smoothing_s: float = 0.5,
    ) -> None:
        self.rate_hz = rate_hz
        self.kp = kp_ppm_per_ms
        self.ki = ki_ppm_per_ms_s
        self.max_ppm = max_ppm
        self.smoothing_s = smoothing_s
        self._error_ms = 0.0
        self._integral_ppm = 0.0
        self._primed = False
        self.ppm = 0.0

    @property
    def drift_ppm(self) -> float:
        """Estimated clock difference, sender relative to receiver (+: sender fast)."""
        return self._integral_ppm

    def update(self, depth_samples: int, target_samples: int, dt_s: float) -> float:
        """Feed one observation; return the playback ratio to use for the next ``dt_s``."""
        error_ms = (depth_samples - target_samples) * 1000.0 / self.rate_hz
        if not self._primed:
            self._error_ms, self._primed = error_ms, True
        else:  # depth saw-tooths by a frame and a device block: smooth before controlling
            self._error_ms += (error_ms - self._error_ms) * min(1.0, dt_s / self.smoothing_s)
        self._integral_ppm += self.ki * self._error_ms * dt_s
        self._integral_ppm = max(-self.max_ppm, min(self.max_ppm, self._integral_ppm))
        ppm = self.kp * self._error_ms + self._integral_ppm
        self.ppm = max(-self.max_ppm, min(self.max_ppm, ppm))
        return 1.0 + self.ppm * 1e-6


class FractionalResampler:
    """Variable-ratio resampler: each call makes ``n_out`` samples from ``ratio * n_out``
    input samples (Catmull-Rom cubic interpolation, continuous across calls)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._buffer = np.zeros((1, channels), np.float32)  # one sample of history
        self._position = 1.0  # read position in _buffer

    def needed(self, n_out: int, ratio: float) -> int:
        """Input samples to add before :meth:`process` can make ``n_out`` outputs."""
        last = self._position + (n_out - 1) * ratio
        return max(0, math.floor(last) + 3 - len(self._buffer))

    def process(self, block: Samples, n_out: int, ratio: float) -> Samples:
        buf = np.concatenate([self._buffer, block.astype(np.float32)])
        if len(buf) < math.floor(self._position + (n_out - 1) * ratio) + 3:
            raise ValueError("not enough input: call needed() first")
        positions = self._position + np.arange(n_out) * ratio
        index = np.floor(positions).astype(np.int64)
        t = (positions - index)[:, None].astype(np.float32)
        xm1, x0, x1, x2 = buf[index - 1], buf[index], buf[index + 1], buf[index + 2]
        out = x0 + 0.5 * t * (
            (x1 - xm1) + t * ((2 * xm1 - 5 * x0 + 4 * x1 - x2) + t * (3 * (x0 - x1) + x2 - xm1))
        )
        self._position = float(positions[-1] + ratio) if n_out else self._position
        keep_from = max(0, math.floor(self._position) - 1)
        self._buffer = buf[keep_from:]
        self._position -= keep_from
        result: Samples = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result
