"""Live playback of one stream through a PortAudio OutputStream, fed by a jitter buffer.

The event loop pushes decoded audio into the :class:`~micwire.common.jitter.JitterBuffer`;
the PortAudio callback pulls exactly what the device asks for. Both go through one lock
held only for a copy. Underruns play silence and are counted by the buffer.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
from micwire.common.errors import DeviceError
from micwire.common.jitter import JitterBuffer
from micwire.sender.portaudio import device_info, sounddevice


class Playback:
    def __init__(self, device: int, rate_hz: int, channels: int, latency_ms: float) -> None:
        sd = sounddevice()
        info = device_info(device)
        self.channels = channels
        self.out_channels = min(channels, int(info["max_output_channels"]))
        target = round(rate_hz * latency_ms / 1000)
        self.buffer = JitterBuffer(channels, target, max_samples=target + rate_hz // 2)
        self._lock = threading.Lock()
        self.rate_hz = rate_hz
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
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot play {rate_hz} Hz, {channels} ch on {info['name']!r}: {exc}"
            ) from exc

    def _callback(self, outdata: Any, frames: int, _time: Any, _status: Any) -> None:
        with self._lock:
            samples = self.buffer.pull(frames)
        if self.out_channels == self.channels:
            outdata[:] = samples
        else:  # fewer device channels than the stream has: play the mono mix
            outdata[:] = samples.mean(axis=1, keepdims=True, dtype=np.float32).astype(np.int16)

    def push(self, timestamp: int, samples: Any) -> None:
        with self._lock:
            self.buffer.push(timestamp, samples)

    async def close(self, drain: bool = True) -> None:
        """Play out what is buffered (bounded by its own length), then close the device."""
        with self._lock:
            self.buffer.finish()
            left_s = self.buffer.depth_samples / self.rate_hz
        if drain:
            deadline = asyncio.get_running_loop().time() + left_s + 0.5
            while self.buffer.depth_samples and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(self._stream.close)
