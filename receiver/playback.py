"""Live playback of one stream through a PortAudio OutputStream.

The event loop pushes decoded audio into the adaptive
:class:`~micwire.common.jitter.JitterBuffer`; the PortAudio callback pulls what the device
asks for through a :class:`~micwire.common.drift.FractionalResampler` whose ratio the
:class:`~micwire.common.drift.DriftController` sets from the buffer depth, so the sender's
and the sound card's clocks can differ without the buffer filling up or running dry. The
lock is held only to move samples in and out of the buffer.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from ..common.devices import sounddevice
from ..common.drift import DriftController, FractionalResampler
from ..common.errors import DeviceError
from ..common.jitter import JitterBuffer

MAX_BUFFER_S = 2.0
SETTLE_S = 0.25  # a stream's first moments (connection set-up, first writes) are not jitter
CLOSE_TIMEOUT_S = 5.0
#: Buffered audio beyond the target that still counts as arriving in real time (the jitter
#: buffer cuts back anything more at once: a pile-up, not a clock).
STEADY_MARGIN_S = 0.1
log = logging.getLogger("micwire.receiver")


class Playback:
    def __init__(self, device: int, rate_hz: int, channels: int, latency_ms: float) -> None:
        sd = sounddevice()
        info = sd.query_devices(device)
        self.channels = channels
        self.out_channels = min(channels, int(info["max_output_channels"]))
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
        self._resampler = FractionalResampler(channels)
        self._lock = threading.Lock()
        self._played = 0
        self.device_underflows = 0
        #: Callbacks that failed (played as silence, never raised into PortAudio, which
        #: would stop the stream for good).
        self.callback_errors = 0
        self.last_callback_error = ""
        self.output_latency_s = 0.0
        try:
            self._stream = sd.OutputStream(
                device=device,
                samplerate=rate_hz,
                channels=self.out_channels,
                dtype="int16",
                latency="low",
                callback=self._callback,
                dither_off=True,
            )
            self.output_latency_s = float(self._stream.latency)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot play {rate_hz} Hz, {channels} ch on {info['name']!r}: {exc}"
            ) from exc

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio thread: never raise (an exception stops the stream for good), never
        # wait long
        try:
            self._fill(outdata, frames, status)
        except Exception as exc:
            outdata.fill(0)
            self.callback_errors += 1
            self.last_callback_error = f"{type(exc).__name__}: {exc}"

    def _fill(self, outdata: Any, frames: int, status: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if self.buffer.playing:
                ratio = self.drift.update(
                    now,
                    self._played,
                    self.buffer.depth_samples,
                    self.buffer.target_samples,
                    frames / self.rate_hz,
                )
            else:
                ratio = 1.0
            self._played += frames
            block = self.buffer.pull(self._resampler.needed(frames, ratio), now, frames)
        samples = self._resampler.process(block, frames, ratio)
        if self.out_channels == self.channels:
            outdata[:] = samples
        else:  # fewer device channels than the stream has: play the mono mix
            outdata[:] = samples.mean(axis=1, keepdims=True, dtype=np.float32).astype(np.int16)
        self.device_underflows += bool(status.output_underflow)

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
                **asdict(self.buffer.stats),
            }

    async def close(self, drain: bool = True) -> None:
        """Play out what is buffered (bounded by its own length), then close the device."""
        with self._lock:
            self.buffer.finish()
            left_s = self.buffer.depth_samples / self.rate_hz
        if drain:
            deadline = asyncio.get_running_loop().time() + left_s + 0.5
            while self.buffer.depth_samples and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        # closing can block while a sound server is stalled: never let that hold up the
        # receiver's exit (a daemon thread does not keep the process alive)
        closed = threading.Event()

        def close() -> None:
            self._stream.close()
            closed.set()

        threading.Thread(target=close, daemon=True, name="close-output").start()
        for _ in range(int(CLOSE_TIMEOUT_S / 0.01)):
            if closed.is_set():
                return
            await asyncio.sleep(0.01)
        log.warning("the output device did not close within %g s; going on", CLOSE_TIMEOUT_S)
        # nor can PortAudio be terminated at exit now: sounddevice's exit handler would wait
        # on the stuck close for ever, and the receiver would never exit (seen with JACK on
        # a loaded machine, every file long finalised); the sender does the same
        atexit.unregister(sounddevice()._exit_handler)


def _round(ppm: float | None) -> float | None:
    return None if ppm is None else round(ppm, 1)
