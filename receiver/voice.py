"""One stream playing on one output device's mix (micwire.receiver.mixer).

The event loop pushes decoded audio into the voice's adaptive
:class:`~micwire.common.jitter.JitterBuffer`; the device's callback pulls through a
resampler whose ratio the :class:`~micwire.common.drift.DriftController` sets from the
buffer's depth, so that the sender's and the sound card's clocks can differ without the
buffer filling up or running dry. At the device's own rate that is the Catmull-Rom
:class:`~micwire.common.drift.FractionalResampler` (as before the mixer: at a ratio of 1
the samples pass unchanged, two samples late); at another rate the windowed-sinc
:class:`~micwire.common.resample.SincResampler`, which converts the rate and corrects the
drift in one step (>= 90 dB SNR, 32 input samples late). The lock is held only to move
samples in and out of the buffer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..common.drift import DriftController, FractionalResampler
from ..common.jitter import JitterBuffer
from ..common.resample import SincResampler

if TYPE_CHECKING:
    from .mixer import DeviceMix

MAX_BUFFER_S = 2.0
SETTLE_S = 0.25  # a stream's first moments (connection set-up, first writes) are not jitter
#: Buffered audio beyond the target that still counts as arriving in real time (the jitter
#: buffer cuts back anything more at once: a pile-up, not a clock).
STEADY_MARGIN_S = 0.1
Floats = npt.NDArray[np.float32]


class Voice:
    """One stream playing on one device's mix."""

    def __init__(
        self, mix: DeviceMix, stream: str, key: str, rate_hz: int, channels: int, latency_ms: float
    ) -> None:
        self.mix = mix
        self.stream = stream
        self.key = key  # its input in the mix (a stream's old voice may still play out)
        self.channels = channels
        self.rate_hz = rate_hz
        self.buffer = JitterBuffer(
            channels,
            rate_hz,
            round(rate_hz * latency_ms / 1000),
            int(rate_hz * MAX_BUFFER_S),
            settle_s=SETTLE_S,
        )
        self.drift = DriftController(rate_hz)
        self._steady_margin = int(STEADY_MARGIN_S * rate_hz)
        self._step = rate_hz / mix.rate_hz  # stream samples per device frame
        self._resampler: FractionalResampler | SincResampler = (
            FractionalResampler(channels)
            if rate_hz == mix.rate_hz
            else SincResampler(channels, rate_hz, mix.rate_hz)
        )
        self._lock = threading.Lock()
        self._played = 0.0  # stream samples the device has taken
        self.device_underflows = 0
        #: Pulls that failed (played as silence, never raised into PortAudio, which would
        #: stop the device for every stream).
        self.callback_errors = 0
        self.last_callback_error = ""

    @property
    def output_latency_s(self) -> float:
        return self.mix.output_latency_s

    def rebind(self, mix: DeviceMix) -> None:
        """Play on ``mix`` from now on (its device came back, perhaps at another rate)."""
        with self._lock:
            if mix.rate_hz != self.mix.rate_hz:
                self._step = self.rate_hz / mix.rate_hz
                self._resampler = (
                    FractionalResampler(self.channels)
                    if self.rate_hz == mix.rate_hz
                    else SincResampler(self.channels, self.rate_hz, mix.rate_hz)
                )
            self.mix = mix

    def pull(self, frames: int, now: float) -> Floats:
        """The device's next ``frames`` of this stream (PortAudio thread)."""
        with self._lock:
            if self.buffer.playing:
                ratio = self.drift.update(
                    now,
                    round(self._played),
                    self.buffer.depth_samples,
                    self.buffer.target_samples,
                    frames / self.mix.rate_hz,
                )
            else:
                ratio = 1.0
            self._played += frames * self._step
            needed = self._resampler.needed(frames, ratio)
            block = self.buffer.pull(needed, now, round(frames * self._step))
        if isinstance(self._resampler, FractionalResampler):
            pcm = self._resampler.process(block, frames, ratio)
            return pcm.astype(np.float32) * np.float32(1 / 32768)
        return self._resampler.process(block.astype(np.float32) / 32768, frames, ratio)

    def push(self, timestamp: int, samples: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self.buffer.push(timestamp, samples, now)
            # the sender's clock is measured on audio arriving as it is captured, not on a
            # backlog (a connection's start, a resend after a reconnect): audio that piles
            # up arrives late by definition and would bend the estimate
            steady = self.buffer.target_samples + self._steady_margin
            if self.buffer.playing and self.buffer.depth_samples <= steady:
                self.drift.arrived(now, timestamp + len(samples))

    def snapshot(self) -> dict[str, Any]:
        """Live figures for stats: depth, target, jitter, drift, counters."""
        with self._lock:
            rate = self.rate_hz / 1000
            return {
                "buffer_ms": round(self.buffer.depth_samples / rate, 1),
                "target_ms": round(self.buffer.target_samples / rate, 1),
                "jitter_ms": round(self.buffer.jitter_samples / rate, 1),
                "depth_error_ms": round(self.drift.error_ms, 2),
                "drift_ppm": round(self.drift.drift_ppm, 1),
                "correction_ppm": round(self.drift.ppm, 1),
                "sender_clock_ppm": _round(self.drift.sender_clock_ppm),
                "device_clock_ppm": _round(self.drift.device_clock_ppm),
                "device_underflows": self.device_underflows,
                "callback_errors": self.callback_errors,
                "device_rate_hz": self.mix.rate_hz,
                "output_device": self.mix.name,
                "output_state": self.mix.state,
                # the device's mix: how often its limiter had to hold loud streams down
                "limiter_hits": self.mix.mixer.stats().limiter_hits,
                **asdict(self.buffer.stats),
            }

    async def close(self, drain: bool = True) -> None:
        """Play out what is buffered (bounded by its own length), then leave the mix."""
        with self._lock:
            self.buffer.finish()
            left_s = self.buffer.depth_samples / self.rate_hz
        if drain and self.mix.running:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + left_s + 0.5
            while self.buffer.depth_samples and loop.time() < deadline:
                await asyncio.sleep(0.01)
        await self.mix.owner.leave(self)


def _round(ppm: float | None) -> float | None:
    return None if ppm is None else round(ppm, 1)
