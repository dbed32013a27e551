"""Capture from a PortAudio input device: a source paced by the sound card."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
from typing import Any

import numpy as np

from ..common.capture import CaptureConverter, CaptureRates, choose_capture_rates
from ..common.devices import resolve_device, sounddevice
from ..common.errors import DeviceError, ParameterError
from ..common.framing import Block, HandOff
from .source import Samples, Sink, Source, fail

#: A device that delivers nothing for this long has gone away (longer than any period).
DEVICE_SILENT_S = 3.0


def input_device(sd: Any, device: str | int | None, channels: int) -> tuple[int, Any]:
    """The input device named by ``device`` (index, name substring, None: the default) and
    its PortAudio description; a DeviceError if it has fewer than ``channels``."""
    index = resolve_device(sd, device, "input")
    info = sd.query_devices(index)
    if info["max_input_channels"] < channels:
        raise DeviceError(
            f"input device {info['name']!r} has {info['max_input_channels']} channels, "
            f"{channels} requested; use --channels {info['max_input_channels']}"
        )
    return index, info


def capture_rates(
    device: str | int | None,
    channels: int,
    codec: str,
    requested_hz: int | None,
    frame_ms: float,
) -> CaptureRates:
    """The rate to open the input ``device`` at, and the rate to send at
    (:func:`choose_capture_rates`): PortAudio's ``check_input_settings`` says which rates
    the device takes."""
    sd = sounddevice()
    index, info = input_device(sd, device, channels)

    def accepts(rate_hz: int) -> bool:
        try:
            sd.check_input_settings(
                device=index, samplerate=rate_hz, channels=channels, dtype="int16"
            )
        except sd.PortAudioError:
            return False
        return True

    default_hz = round(float(info["default_samplerate"]))
    try:
        return choose_capture_rates(codec, requested_hz, default_hz, frame_ms, accepts)
    except ParameterError as exc:
        raise DeviceError(f"cannot capture from {info['name']!r}: {exc}") from exc


class DeviceSource(Source):
    """Capture from a PortAudio input device.

    The PortAudio callback only copies the block and, when :class:`HandOff` says a
    packet's worth has gathered, hands what it holds to the event loop
    (``call_soon_threadsafe``): with ``gather``, one wake-up per frame rather than one per
    device period; with ``whole_frames``, PortAudio itself calls back once a frame.
    Numbering runs on the loop, where the block goes straight to the sink (the sender's
    spool: bounded, it drops the oldest audio and counts it).

    A device opened at ``capture_rate_hz`` (default: ``rate_hz``, the rate sent) other than
    the stream's is converted on the loop too (:class:`CaptureConverter`), never in the
    PortAudio callback: the timeline, ``block_samples`` and the hand-off's frames are in
    samples of the rate sent.
    """

    def __init__(
        self,
        device: str | int | None,
        rate_hz: int,
        channels: int,
        block_samples: int,
        *,
        gather: bool = False,
        whole_frames: bool = False,
        capture_rate_hz: int | None = None,
    ) -> None:
        super().__init__(rate_hz, channels)
        sd = sounddevice()
        self.device, info = input_device(sd, device, channels)
        self.capture_rate_hz = capture_rate_hz or rate_hz
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
        whole = whole_frames and block_samples >= 2 * period and not self.converted
        # (converted, a frame of the rate sent needs the resampler's look-ahead beyond the
        # device's frame-sized block: the next callback's; so a callback per period)
        self.blocksize = block_samples if whole else 0
        self.description = f"device {info['name']!r}"
        if self.converted:
            self.description += f" at {self.capture_rate_hz} Hz"
        if not whole_frames:
            self.note = (
                "device blocks gathered into packets of up to a frame"
                if gather
                else "each device block sent at once"
            )

    @property
    def converted(self) -> bool:
        """Captured at another rate than sent."""
        return self.capture_rate_hz != self.rate_hz

    async def run(self, sink: Sink) -> None:
        sd = sounddevice()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        position = 0
        channels = self.channels
        converter = (
            CaptureConverter(channels, self.capture_rate_hz, self.rate_hz)
            if self.converted
            else None
        )

        heard = loop.time()  # when audio last came from the device

        def hand_on(samples: Samples, capture_time: float) -> None:
            nonlocal position
            if not len(samples):
                return
            block = Block(position, samples, capture_time)
            position += len(samples)
            try:
                sink(block)
            except Exception as exc:  # a loop callback's error would be lost: to run()
                fail(done, exc)

        def deliver(chunks: list[bytes], capture_time: float, overflows: int) -> None:
            nonlocal heard
            if done.done() or not chunks:
                return
            heard = loop.time()
            samples = np.frombuffer(b"".join(chunks), np.int16).reshape(-1, channels)
            self.input_overflows += overflows
            if converter is not None:
                samples, capture_time = converter.convert(samples, capture_time)
            hand_on(samples, capture_time)

        def deliver_rest() -> None:
            # the resampler's look-ahead: the last samples captured, after it
            if converter is not None and not done.done():
                hand_on(*converter.flush())

        rate = self.capture_rate_hz
        hand_off = HandOff(
            self.block_samples if self.gather else 1,
            self.whole_frames,
            converter.ready if converter is not None else None,
        )
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
                samplerate=rate,
                channels=self.channels,
                dtype="int16",
                blocksize=self.blocksize,  # 0: each period as the host API gives it
                latency="low",
                callback=callback,
                dither_off=True,
            )
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot open {self.description} at {rate} Hz, {self.channels} ch: {exc}"
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
                fail(
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
        loop.call_soon(deliver_rest)
        loop.call_soon(tail.set_result, None)
        await tail
        if done.done():
            done.result()
