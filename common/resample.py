"""Stream-rate to device-rate conversion and drift correction in one step (pure).

:class:`SincResampler` is a streaming polyphase windowed-sinc resampler whose step (input
samples per output sample) may change on every block: the nominal ratio of the two rates
times the drift controller's ratio (:class:`micwire.common.drift.DriftController`). The
device callback asks for exactly ``n_out`` samples; :meth:`SincResampler.needed` says how
many input samples that takes.

Why not libsoxr's variable-rate mode (python-soxr ``ResampleStream(vr=True)`` with
``set_io_ratio``, marked experimental there): it works and measures well (about 120 dB
SNR for a 1 kHz tone 48 -> 44.1 kHz), but it holds 240 input samples (5 ms at 48 kHz)
inside whatever the quality or block size, and live playback must not get later. This one
holds ``taps / 2`` input samples (32: 0.67 ms at 48 kHz) and keeps >= 90 dB SNR for that
tone (tests/common/test_resample.py; figures in bench/resample.py).

The filter: ``taps`` coefficients of a Kaiser-windowed sinc (beta 10: sidelobes near
-100 dB), cut off at the lower of the two Nyquist frequencies (the -6 dB point there; with
64 taps the transition is about 5 kHz wide at 48 kHz, so only content in the top ~2.5 kHz
below Nyquist can alias, above 19.6 kHz for 44.1 kHz). Its impulse response is tabulated at
``phases`` fractional offsets and linearly interpolated between them. At a step of exactly 1
from an integer position the samples pass through unchanged, as the Catmull-Rom
resampler's do.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

Block = npt.NDArray[np.float32]

KAISER_BETA = 10.0


def sinc_table(taps: int, phases: int, cutoff: float) -> npt.NDArray[np.float32]:
    """Row ``p`` (0..phases, one more than ``phases`` so that interpolation needs no wrap)
    holds the filter for an output at fractional position ``p / phases`` past input
    sample ``taps // 2 - 1`` of the window; ``cutoff`` in cycles per input sample."""
    half = taps // 2
    fractions = np.arange(phases + 1)[:, None] / phases
    offsets = np.arange(taps)[None, :] - (half - 1) - fractions  # in [-half, half]
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (offsets / half) ** 2, 0.0, None)))
    table = 2.0 * cutoff * np.sinc(2.0 * cutoff * offsets) * window / np.i0(KAISER_BETA)
    table /= table.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    result: npt.NDArray[np.float32] = table.astype(np.float32)
    return result


class SincResampler:
    """Makes ``n_out`` output samples per call at ``out_rate_hz`` from input at
    ``in_rate_hz``, continuous across calls; ``ratio`` (default 1) scales the step for
    clock drift: 1.0003 consumes 300 ppm more input per output sample. Float samples,
    shape (frames, channels)."""

    def __init__(
        self,
        channels: int,
        in_rate_hz: float,
        out_rate_hz: float,
        taps: int = 64,
        phases: int = 256,
    ) -> None:
        if taps < 4 or taps % 2:
            raise ValueError(f"taps must be even and >= 4, not {taps}")
        if channels < 1 or in_rate_hz <= 0 or out_rate_hz <= 0 or phases < 1:
            raise ValueError("channels, rates and phases must be positive")
        self.channels = channels
        self.step = in_rate_hz / out_rate_hz  # input samples per output sample, nominal
        self.taps = taps
        self.phases = phases
        cutoff = 0.5 * min(1.0, out_rate_hz / in_rate_hz)
        table = sinc_table(taps, phases, cutoff)
        self._table = table[:-1]
        self._slope = table[1:] - table[:-1]  # per phase: towards the next one
        # history: the taps/2 - 1 samples before the first (silence) that the window reaches
        self._buffer = np.zeros((taps // 2 - 1, channels), np.float32)
        self._position = float(taps // 2 - 1)  # read position in _buffer

    @property
    def delay_samples(self) -> int:
        """Input samples the resampler must hold beyond the one it outputs: its latency."""
        return self.taps // 2

    def needed(self, n_out: int, ratio: float = 1.0) -> int:
        """Input samples to add before :meth:`process` can make ``n_out`` outputs."""
        if n_out <= 0:
            return 0
        last = self._position + (n_out - 1) * self.step * ratio
        return max(0, math.floor(last) + self.taps // 2 + 1 - len(self._buffer))

    def process(self, block: npt.ArrayLike, n_out: int, ratio: float = 1.0) -> Block:
        """``n_out`` output samples, after adding ``block`` (at least :meth:`needed`)."""
        incoming = np.asarray(block, np.float32).reshape(-1, self.channels)
        buf = np.concatenate([self._buffer, incoming]) if len(incoming) else self._buffer
        step = self.step * ratio
        if len(buf) < len(self._buffer) + self.needed(n_out, ratio):
            raise ValueError("not enough input: call needed() first")
        if n_out <= 0:
            out: Block = np.zeros((0, self.channels), np.float32)
            next_position = self._position
        elif step == 1.0 and self._position.is_integer():
            # the sinc is zero at every other integer offset: the samples themselves
            start = int(self._position)
            out = buf[start : start + n_out].copy()
            next_position = self._position + n_out
        else:
            positions = self._position + np.arange(n_out) * step
            index = np.floor(positions)
            phase = (positions - index) * self.phases
            row = np.minimum(phase.astype(np.int64), self.phases - 1)
            t = (phase - row).astype(np.float32)[:, None]
            coefficients = self._table[row] + self._slope[row] * t
            # the taps input samples around each output, as a view then one gather (output,
            # channel, tap): faster than fancy indexing with a 2-D index array
            starts = index.astype(np.int64) - (self.taps // 2 - 1)
            window = sliding_window_view(buf, self.taps, axis=0)[starts]
            out = np.matmul(window, coefficients[:, :, None])[:, :, 0]
            next_position = float(positions[-1] + step)
        keep_from = max(0, math.floor(next_position) - (self.taps // 2 - 1))
        self._buffer = buf[keep_from:]
        self._position = next_position - keep_from
        return out
