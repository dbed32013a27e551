"""Clock-drift compensation for live playback (pure).

A sender's ADC and a receiver's DAC never run at exactly the same rate: tens to hundreds of
ppm apart. Left alone, the jitter buffer slowly fills (sender fast) or empties (sender
slow). :class:`DriftController` returns the playback *ratio* (input samples consumed per
output sample) that holds the depth at its target: the clocks' ratio measured directly, as
a delay-locked loop does (a least-squares rate of the sender's samples against the local
clock, divided by the device's), fed forward, plus a proportional correction on the
buffer's depth error. Measuring the drift instead of integrating the depth error keeps the
estimate clean when the target moves or the network stalls. :class:`FractionalResampler`
applies the ratio with Catmull-Rom interpolation; at a ratio of exactly 1 it passes samples
through unchanged.
Corrections are limited to ``max_ppm`` (2000 ppm = 3.5 cents of pitch, inaudible).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


class RateEstimator:
    """Least-squares slope of a count against time, over an exponentially forgetting window
    of ``window_s``: how many samples per second a clock really produces."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._t0: float | None = None
        self._last_t = 0.0
        self._sw = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._y0 = 0.0

    def add(self, t: float, count: float) -> None:
        if self._t0 is None:
            self._t0, self._y0 = t, count
        x, y = t - self._t0, count - self._y0
        decay = math.exp(-(x - self._last_t) / self.window_s) if self._sw else 1.0
        self._last_t = x
        self._sw = self._sw * decay + 1.0
        self._sx = self._sx * decay + x
        self._sy = self._sy * decay + y
        self._sxx = self._sxx * decay + x * x
        self._sxy = self._sxy * decay + x * y

    @property
    def span_s(self) -> float:
        return self._last_t

    def rate(self) -> float | None:
        """Samples per second, or None before there is enough to tell."""
        denominator = self._sw * self._sxx - self._sx * self._sx
        if self._sw < 3 or denominator <= 1e-12:
            return None
        return (self._sw * self._sxy - self._sx * self._sy) / denominator


class DriftController:
    """Playback ratio from two estimates: the clocks' drift, measured directly (sender
    samples arriving vs device samples played, both against the local monotonic clock),
    fed forward; and a proportional term on the buffer's depth error that brings the depth
    to its target and absorbs whatever the estimate misses."""

    def __init__(
        self,
        rate_hz: int,
        kp_ppm_per_ms: float = 200.0,  # a depth error decays with a 5 s time constant
        max_ppm: float = 2000.0,
        smoothing_s: float = 0.5,
        window_s: float = 30.0,
        settle_s: float = 5.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.kp = kp_ppm_per_ms
        self.max_ppm = max_ppm
        self.smoothing_s = smoothing_s
        self.settle_s = settle_s
        self.sender = RateEstimator(window_s)
        self.device = RateEstimator(window_s)
        self._error_ms: float | None = None
        self._drift_ppm = 0.0
        self.ppm = 0.0

    @property
    def drift_ppm(self) -> float:
        """Estimated clock difference, sender relative to receiver (+: sender fast)."""
        return self._drift_ppm

    @property
    def sender_clock_ppm(self) -> float | None:
        """The sender's clock against the local clock (None until measured)."""
        return self._clock_ppm(self.sender)

    @property
    def device_clock_ppm(self) -> float | None:
        """The sound card's clock against the local clock (None until measured)."""
        return self._clock_ppm(self.device)

    def _clock_ppm(self, estimator: RateEstimator) -> float | None:
        rate = estimator.rate()
        if rate is None or estimator.span_s < self.settle_s:
            return None
        return (rate / self.rate_hz - 1.0) * 1e6

    @property
    def error_ms(self) -> float:
        """Smoothed depth error the controller works on (depth at each pull minus target)."""
        return self._error_ms or 0.0

    def arrived(self, now_s: float, timeline_end: int) -> None:
        """The sender's audio up to ``timeline_end`` (samples) had arrived at ``now_s``."""
        self.sender.add(now_s, timeline_end)

    def update(
        self, now_s: float, played: int, depth_samples: int, target_samples: int, dt_s: float
    ) -> float:
        """The device asks for more at ``now_s`` after ``played`` samples in all; return the
        playback ratio (input consumed per output sample) for the next block."""
        self.device.add(now_s, played)
        sender_rate, device_rate = self.sender.rate(), self.device.rate()
        if (
            sender_rate
            and device_rate
            and min(self.sender.span_s, self.device.span_s) >= self.settle_s
        ):
            drift = (sender_rate / device_rate - 1.0) * 1e6
            self._drift_ppm = max(-self.max_ppm, min(self.max_ppm, drift))
        error_ms = (depth_samples - target_samples) * 1000.0 / self.rate_hz
        if self._error_ms is None:
            self._error_ms = error_ms
        else:  # depth saw-tooths by a frame and a device block: smooth before controlling
            self._error_ms += (error_ms - self._error_ms) * min(1.0, dt_s / self.smoothing_s)
        ppm = self._drift_ppm + self.kp * self._error_ms
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
