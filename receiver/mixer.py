"""Live playback: one mixer per output device; each stream that plays there is a voice of it.

A :class:`DeviceMix` is one PortAudio OutputStream (one client of the sound server, however
many streams play): opened at the rate of the first stream that plays there when the device
takes it, else at the device's default rate, with up to two channels. Its callback pulls
each voice's next block and sums them with the pure :class:`~micwire.common.mixer.Mixer`
(gain, mute, solo, pan, master gain, limiter), in float.

A :class:`Voice` is one stream on one device: the event loop pushes decoded audio into its
adaptive :class:`~micwire.common.jitter.JitterBuffer`; the callback pulls through a
resampler whose ratio the :class:`~micwire.common.drift.DriftController` sets from the
buffer's depth, so that the sender's and the sound card's clocks can differ without the
buffer filling up or running dry. At the device's own rate that is the Catmull-Rom
:class:`~micwire.common.drift.FractionalResampler` (as before the mixer: at a ratio of 1
the samples pass unchanged, two samples late); at another rate the windowed-sinc
:class:`~micwire.common.resample.SincResampler`, which converts the rate and corrects the
drift in one step (>= 90 dB SNR, 32 input samples late).

:class:`Mixers` keeps one DeviceMix per device while any voice plays on it. Locks are held
only to move samples and to change the set of voices; a voice whose pull fails plays
silence and counts it, and never silences the others.
"""

from __future__ import annotations

import asyncio
import atexit
import fnmatch
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..common.devices import sounddevice
from ..common.drift import DriftController, FractionalResampler
from ..common.errors import DeviceError, MixSettingError
from ..common.jitter import JitterBuffer
from ..common.mixer import MasterSettings, MixBoard, Mixer, MixSettings
from ..common.resample import SincResampler

MAX_BUFFER_S = 2.0
SETTLE_S = 0.25  # a stream's first moments (connection set-up, first writes) are not jitter
CLOSE_TIMEOUT_S = 5.0
#: Buffered audio beyond the target that still counts as arriving in real time (the jitter
#: buffer cuts back anything more at once: a pile-up, not a clock).
STEADY_MARGIN_S = 0.1
#: A mix has at most this many channels (stereo: a headset, a pair of speakers).
MAX_CHANNELS = 2
#: The file in the state directory that keeps every stream's mix settings.
MIX_STATE = "mix.json"
#: A device that has not asked for audio this long while streams play on it has stalled.
STALL_S = 2.0
#: How often a device that went away is tried again.
RETRY_S = 3.0
#: The mix's meter falls back by this much per second after a peak (a PPM's fall-back).
METER_FALL_DB_PER_S = 20.0
log = logging.getLogger("micwire.receiver")
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


class DeviceMix:
    """One output device's OutputStream and the mix its callback plays."""

    def __init__(self, owner: Mixers, device: int, rate_hz: int) -> None:
        sd = sounddevice()
        info = sd.query_devices(device)
        self.owner = owner
        self.device = device
        self.name = str(info["name"])
        self.channels = max(1, min(MAX_CHANNELS, int(info["max_output_channels"])))
        self.rate_hz = self._rate(sd, device, rate_hz, int(info["default_samplerate"]))
        self.mixer = Mixer(self.channels, self.rate_hz, owner.state.master(self.name))
        #: The mix's peak level (linear), falling back METER_FALL_DB_PER_S after a peak.
        self.meter = 0.0
        self._fall = 10 ** (-METER_FALL_DB_PER_S / 20 / self.rate_hz)  # per frame
        self.voices: dict[str, Voice] = {}
        self._lock = threading.Lock()
        self.output_latency_s = 0.0
        self.running = False
        #: playing; stalled (it stopped asking for audio: a stalled sound server); gone (it
        #: stopped: unplugged, its sound server ended), tried again every RETRY_S
        self.state = "playing"
        self.retry_at = 0.0
        self.last_callback = time.monotonic()
        self._finished = False
        try:
            self._stream = sd.OutputStream(
                device=device,
                samplerate=self.rate_hz,
                channels=self.channels,
                dtype="float32",
                latency="low",
                callback=self._callback,
                finished_callback=self._stopped,
                dither_off=True,
            )
            self.output_latency_s = float(self._stream.latency)
            self._stream.start()
            self.running = True
        except sd.PortAudioError as exc:
            raise DeviceError(
                f"cannot play {self.rate_hz} Hz, {self.channels} ch on {self.name!r}: {exc}"
            ) from exc
        if self.rate_hz != rate_hz:
            log.info(
                "%r plays at %d Hz: streams at other rates are converted", self.name, self.rate_hz
            )

    def _rate(self, sd: Any, device: int, wanted: int, default: int) -> int:
        """``wanted`` if the device takes it, else its default rate."""
        try:
            sd.check_output_settings(
                device=device, samplerate=wanted, channels=self.channels, dtype="float32"
            )
        except sd.PortAudioError:
            return default
        return wanted

    def add(self, voice: Voice, settings: MixSettings) -> None:
        with self._lock:
            self.mixer.add_input(voice.key, voice.channels, settings)
            self.voices[voice.key] = voice

    def set_master(self, master: MasterSettings) -> None:
        with self._lock:
            self.mixer.set_master(master)

    def view(self) -> dict[str, Any]:
        """What the page's master strip shows of this device's mix."""
        stats = self.mixer.stats()
        return {
            "device": self.name,
            "rate_hz": self.rate_hz,
            "channels": self.channels,
            "state": self.state,
            "streams": len({voice.stream for voice in list(self.voices.values())}),
            "peak_dbfs": round(20 * float(np.log10(max(self.meter, 1e-5))), 1),
            "limiter_hits": stats.limiter_hits,
            "limiter_reduction_db": round(stats.limiter_reduction_db, 1),
            "master": self.mixer.master.to_json(),
        }

    def set_settings(self, stream: str, settings: MixSettings) -> None:
        """``stream``'s new settings, heard from the next block (ramped)."""
        with self._lock:
            for voice in self.voices.values():
                if voice.stream == stream:
                    self.mixer.set_settings(voice.key, settings)

    def remove(self, voice: Voice) -> None:
        with self._lock:
            if self.voices.pop(voice.key, None) is not None:
                self.mixer.remove_input(voice.key)

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio thread: never raise (an exception stops the stream for good), never
        # wait long
        try:
            self._fill(outdata, frames, status)
        except Exception as exc:
            outdata.fill(0)
            for voice in list(self.voices.values()):
                voice.callback_errors += 1
                voice.last_callback_error = f"{type(exc).__name__}: {exc}"

    def _stopped(self) -> None:
        """PortAudio ended the stream (closed by us, or the device went away)."""
        self._finished = True

    @property
    def gone(self) -> bool:
        """The device stopped the stream by itself (not our close)."""
        return self.running and (self._finished or not self._stream.active)

    def _fill(self, outdata: Any, frames: int, status: Any) -> None:
        now = time.monotonic()
        self.last_callback = now
        with self._lock:
            for voice in self.voices.values():
                try:
                    block = voice.pull(frames, now)
                except Exception as exc:  # this stream plays silence; the others play on
                    block = np.zeros((frames, voice.channels), np.float32)
                    voice.callback_errors += 1
                    voice.last_callback_error = f"{type(exc).__name__}: {exc}"
                self.mixer.feed(voice.key, block)
                voice.device_underflows += bool(status.output_underflow)
            mixed = self.mixer.render(frames)
        outdata[:] = mixed
        peak = float(np.max(np.abs(mixed))) if frames else 0.0
        self.meter = max(peak, self.meter * self._fall**frames)

    def abandon(self) -> None:
        """Forget a device that went away: its voices move to a new stream; the old one is
        closed on a thread of its own (closing a stream whose sound server died can block
        for ever)."""
        self.running = False
        with self._lock:
            self.voices.clear()
        threading.Thread(target=self._stream.close, daemon=True, name="close-gone").start()

    async def close(self) -> None:
        """Close the device. Closing can block while a sound server is stalled: never let
        that hold up the receiver's exit (a daemon thread does not keep it alive)."""
        if self.state == "gone":  # its sound server died: closing it may never return
            self.abandon()
            atexit.unregister(sounddevice()._exit_handler)
            return
        self.running = False
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


class MixState:
    """Every stream's mix settings (:class:`~micwire.common.mixer.MixBoard`), kept in
    ``path`` (None: in memory only) so that they outlive a stream's reconnects and a
    restart of the receiver. Settings change only what is heard, never what is recorded."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.board = MixBoard()
        self._mixers: Mixers | None = None
        if path is not None and path.exists():
            try:
                self.board = MixBoard.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, MixSettingError) as exc:
                log.warning("the mix settings in %s were not read (%s): all at 0 dB", path, exc)

    def settings(self, stream: str) -> MixSettings:
        return self.board.settings(stream)

    def master(self, device: str) -> MasterSettings:
        return self.board.master(device)

    def patch_master(self, device: str, body: object) -> MasterSettings:
        """Apply a PATCH body to a device's master (:class:`MixSettingError` if wrong)."""
        master = self.board.patch_master(device, body)
        self._save()
        if self._mixers is not None:
            self._mixers.set_master(device, master)
        return master

    def patch(self, stream: str, body: object) -> MixSettings:
        """Apply a PATCH body (:class:`MixSettingError` if it is wrong: nothing changes),
        keep it, and let the stream's voices hear it."""
        settings = self.board.patch(stream, body)
        self._save()
        if self._mixers is not None:
            self._mixers.set_settings(stream, settings)
        return settings

    def _save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self.board.to_json(), indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("the mix settings could not be kept in %s: %s", self.path, exc)


class Mixers:
    """The receiver's device mixes: one per output device that has a voice."""

    def __init__(
        self,
        default_device: int | None,
        state: MixState | None = None,
        routes: list[tuple[str, int | None]] | None = None,
    ) -> None:
        self.default_device = default_device
        #: (glob, device): the first glob a stream's name matches says where it plays.
        self.routes = routes or []
        self.state = state if state is not None else MixState(None)
        self.state._mixers = self
        self._mixes: dict[int, DeviceMix] = {}
        self._keys = itertools.count(1)

    def device_for(self, stream: str) -> int | None:
        """Where ``stream`` plays (None: nowhere)."""
        for glob, device in self.routes:
            if fnmatch.fnmatchcase(stream, glob):
                return device
        return self.default_device

    def voice(self, stream: str, rate_hz: int, channels: int, latency_ms: float) -> Voice | None:
        """A voice for ``stream`` on its device's mix (opened if need be); None when it plays
        nowhere. :class:`DeviceError` when the device cannot be opened."""
        device = self.device_for(stream)
        if device is None:
            return None
        mix = self._mixes.get(device)
        if mix is None:
            mix = self._mixes[device] = DeviceMix(self, device, rate_hz)
        key = f"{stream}#{next(self._keys)}"
        voice = Voice(mix, stream, key, rate_hz, channels, latency_ms)
        mix.add(voice, self.state.settings(stream))
        return voice

    def set_settings(self, stream: str, settings: MixSettings) -> None:
        for mix in self._mixes.values():
            mix.set_settings(stream, settings)

    def set_master(self, device: str, master: MasterSettings) -> None:
        for mix in self._mixes.values():
            if mix.name == device:
                mix.set_master(master)

    def views(self) -> list[dict[str, Any]]:
        """Every open device's mix, by name."""
        return sorted((mix.view() for mix in self._mixes.values()), key=lambda v: v["device"])

    def check(self, now: float) -> None:
        """Every second (the event loop): say when a device stalls or goes away and when
        it plays again; reopen one that went away, every RETRY_S, with its voices."""
        for device, mix in list(self._mixes.items()):
            if not mix.voices:
                continue
            if mix.gone or mix.state == "gone":
                if mix.state != "gone":
                    mix.state, mix.retry_at = "gone", now + RETRY_S
                    log.warning(
                        "output device %r stopped; the streams on it are recorded as ever, "
                        "and it is tried again every %g s",
                        mix.name,
                        RETRY_S,
                    )
                elif now >= mix.retry_at:
                    mix.retry_at = now + RETRY_S
                    self._reopen(device, mix)
            elif now - mix.last_callback > STALL_S:
                if mix.state != "stalled":
                    mix.state = "stalled"
                    log.warning(
                        "output device %r has not asked for audio for %.0f s (a stalled "
                        "sound server?); the streams on it are recorded as ever",
                        mix.name,
                        now - mix.last_callback,
                    )
            elif mix.state == "stalled":
                mix.state = "playing"
                log.info("output device %r plays again", mix.name)

    def _reopen(self, device: int, old: DeviceMix) -> None:
        """A new stream on ``device`` for ``old``'s voices (each keeps its buffer)."""
        voices = list(old.voices.values())
        try:
            mix = DeviceMix(self, device, voices[0].rate_hz)
        except DeviceError as exc:
            log.debug("output device %r not back yet: %s", old.name, exc)
            return
        old.abandon()
        self._mixes[device] = mix
        for voice in voices:
            voice.rebind(mix)
            mix.add(voice, self.state.settings(voice.stream))
        log.info("output device %r plays again (reopened at %d Hz)", mix.name, mix.rate_hz)

    async def leave(self, voice: Voice) -> None:
        """``voice`` is done: out of its mix, and the device closed if it was the last."""
        mix = voice.mix
        mix.remove(voice)
        if not mix.voices and self._mixes.get(mix.device) is mix:
            del self._mixes[mix.device]
            await mix.close()


def _round(ppm: float | None) -> float | None:
    return None if ppm is None else round(ppm, 1)
