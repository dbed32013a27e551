"""Where the sender's audio comes from: a PortAudio device, a tone, or a file.

A source hands :class:`~micwire.common.framing.Block` s on one timeline to a *sink*, a
plain function called on the event loop's thread as each block is captured: no task, no
queue between capture and the spool, so a block costs one event-loop wake-up. A device
source is paced by the sound card; tone and file sources pace themselves against an
absolute clock (no drift from sleeping late), so they behave like a live microphone.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ..common.devices import resolve_device, sounddevice
from ..common.errors import AudioFormatError, DeviceError, ParameterError
from ..common.framing import Block, HandOff

Samples = npt.NDArray[np.int16]
Sink = Callable[[Block], None]


class Source(abc.ABC):
    """A live source of blocks. ``stop()`` ends it; blocks captured before are handed on."""

    def __init__(self, rate_hz: int, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        #: Times the device reported an input overflow (the OS lost samples).
        self.input_overflows = 0
        self._stop = asyncio.Event()
        self.description = ""
        #: How audio leaves the source, when that is worth saying in the log.
        self.note = ""

    def stop(self) -> None:
        """End the stream (call on the event loop's thread)."""
        self._stop.set()

    @abc.abstractmethod
    async def run(self, sink: Sink) -> None:
        """Hand blocks in timeline order to ``sink`` until stopped or exhausted. An error
        raised by the sink ends the source and is raised here."""

    async def _until_stopped(self, done: asyncio.Future[None]) -> None:
        """Wait for ``done`` (exhausted, or failed: raised) or a stop."""
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        waits: list[asyncio.Future[Any]] = [done, stopped]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if done.done():
            done.result()


def _fail(done: asyncio.Future[None], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


#: A device that delivers nothing for this long has gone away (longer than any period).
DEVICE_SILENT_S = 3.0


class DeviceSource(Source):
    """Capture from a PortAudio input device.

    The PortAudio callback only copies the block and, when :class:`HandOff` says a
    packet's worth has gathered, hands what it holds to the event loop
    (``call_soon_threadsafe``): with ``gather``, one wake-up per frame rather than one per
    device period; with ``whole_frames``, PortAudio itself calls back once a frame.
    Numbering runs on the loop, where the block goes straight to the sink (the sender's
    spool: bounded, it drops the oldest audio and counts it).
    """

    def __init__(
        self,
        device: str | None,
        rate_hz: int,
        channels: int,
        block_samples: int,
        *,
        gather: bool = False,
        whole_frames: bool = False,
    ) -> None:
        super().__init__(rate_hz, channels)
        sd = sounddevice()
        self.device = resolve_device(sd, device, "input")
        info = sd.query_devices(self.device)
        if info["max_input_channels"] < channels:
            raise DeviceError(
                f"input device {info['name']!r} has {info['max_input_channels']} channels, "
                f"{channels} requested; use --channels {info['max_input_channels']}"
            )
        self.block_samples = block_samples
        #: Hand over whole frames as soon as each is complete (Opus).
        self.whole_frames = whole_frames
        #: Hand audio over in packets of up to ``block_samples`` (always for whole frames),
        #: or every device block at once (the lowest latency, a wake-up per device period).
        self.gather = gather or whole_frames
        # Whole frames of at least two device periods: PortAudio gathers each frame from
        # the periods and calls back once a frame, the moment its last sample arrives (as
        # HandOff would, without a call into Python every period). A shorter frame stays
        # with a callback per period: else several calls into Python would fall within
        # one period of the sound server's cycle, more work where it can least wait, for
        # no saving. The host API's low input latency is its period (JACK) or near it
        # (ALSA).
        period = float(info["default_low_input_latency"]) * rate_hz
        self.blocksize = block_samples if whole_frames and block_samples >= 2 * period else 0
        self.description = f"device {info['name']!r}"
        if not whole_frames:
            self.note = (
                "device blocks gathered into packets of up to a frame"
                if gather
                else "each device block sent at once"
            )

    async def run(self, sink: Sink) -> None:
        sd = sounddevice()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        position = 0
        channels = self.channels

        heard = loop.time()  # when audio last came from the device

        def deliver(chunks: list[bytes], capture_time: float, overflows: int) -> None:
            nonlocal position, heard
            if done.done() or not chunks:
                return
            heard = loop.time()
            samples = np.frombuffer(b"".join(chunks), np.int16).reshape(-1, channels)
            block = Block(position, samples, capture_time)
            position += len(samples)
            self.input_overflows += overflows
            try:
                sink(block)
            except Exception as exc:  # a loop callback's error would be lost: to run()
                _fail(done, exc)

        rate = self.rate_hz
        hand_off = HandOff(self.block_samples if self.gather else 1, self.whole_frames)
        # the callback thread's own: what it holds, since when, and the device's overflow
        # reports among it
        held: list[bytes] = []
        since = 0.0
        overflows = 0

        def callback(indata: Any, frames: int, _time: Any, status: Any) -> None:
            # PortAudio thread: copy, and now and then hand off; nothing else; never raise
            nonlocal held, since, overflows
            if not held:
                since = time.time() - frames / rate
            held.append(bytes(indata))
            overflows += bool(status.input_overflow)
            if hand_off.add(frames):
                with contextlib.suppress(RuntimeError):  # the loop closed while winding down
                    loop.call_soon_threadsafe(deliver, held, since, overflows)
                held, overflows = [], 0

        try:
            stream = sd.RawInputStream(
                device=self.device,
                samplerate=self.rate_hz,
                channels=self.channels,
                dtype="int16",
                blocksize=self.blocksize,  # 0: each period as the host API gives it
                latency="low",
                callback=callback,
                dither_off=True,
            )
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot open {self.description} at {self.rate_hz} Hz, {self.channels} ch: {exc}"
            ) from exc

        watchdog: asyncio.TimerHandle | None = None
        gone = False

        def watch() -> None:
            # a device that stops calling back (unplugged, its sound server gone) must
            # not leave a sender running that sends nothing: fail, so it is said (and a
            # service manager starts it again, waiting for the device)
            nonlocal watchdog, gone
            quiet = loop.time() - heard
            if quiet > DEVICE_SILENT_S:
                gone = True
                _fail(
                    done,
                    DeviceError(
                        f"{self.description} stopped delivering audio ({quiet:.0f} s "
                        "without any): was it unplugged, or did its sound server stop?"
                    ),
                )
            else:
                watchdog = loop.call_later(1.0, watch)

        try:
            stream.start()
        except sd.PortAudioError as exc:
            stream.close()
            raise DeviceError(f"cannot start {self.description}: {exc}") from exc
        watchdog = loop.call_later(1.0, watch)
        try:
            await self._until_stopped(done)
        finally:
            watchdog.cancel()
            if gone:
                # PortAudio's stop waits for a callback that will never come: stop it on a
                # thread of its own that nobody waits for, and leave. Nor can PortAudio be
                # terminated at exit any more (its JACK host asserts): sounddevice's exit
                # handler would turn the error into an abort
                threading.Thread(target=stream.close, daemon=True).start()
                atexit.unregister(sd._exit_handler)
            else:
                stream.stop()
                stream.close()
        # stopped, and the stream closed: its callback is done. What it handed off is on
        # the loop's ready queue; what it still held goes after it, in order
        tail: asyncio.Future[None] = loop.create_future()
        loop.call_soon(deliver, held, since, overflows)
        loop.call_soon(tail.set_result, None)
        await tail
        if done.done():
            done.result()


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
                _fail(done, exc)

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


def parse_source(spec: str | None) -> tuple[str, str]:
    """``tone:440`` -> ("tone", "440"); ``file:x.wav`` -> ("file", "x.wav"); None -> device."""
    if spec is None:
        return "device", ""
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in ("tone", "file") or not arg:
        raise ParameterError(f"bad --source {spec!r}: use tone:HZ or file:PATH")
    return kind, arg


def open_source(
    spec: str | None,
    device: str | None,
    rate_hz: int,
    channels: int,
    block_samples: int,
    clock_scale: float = 1.0,
    *,
    gather: bool = False,
    whole_frames: bool = False,
) -> Source:
    kind, arg = parse_source(spec)
    if kind == "tone":
        try:
            frequency = float(arg)
        except ValueError:
            raise ParameterError(f"bad tone frequency {arg!r}: use e.g. tone:440") from None
        return ToneSource(frequency, rate_hz, channels, block_samples, clock_scale)
    if kind == "file":
        return FileSource(arg, rate_hz, channels, block_samples, clock_scale)
    return DeviceSource(
        device, rate_hz, channels, block_samples, gather=gather, whole_frames=whole_frames
    )
