"""Live playback: one mix per output device; each stream that plays there is a voice of it.

A :class:`DeviceMix` is one PortAudio OutputStream (one client of the sound server, however
many streams play): opened at the rate of the first stream that plays there when the device
takes it (and it is 44.1 kHz or more), else at the device's default rate, with up to two
channels. Its callback pulls each voice's next block (micwire.receiver.voice: jitter
buffer, drift control, resampling to the device's rate) and sums them with the pure
:class:`~micwire.common.mixer.Mixer` (gain, mute, solo, pan, master gain, limiter), in
float.

:class:`Mixers` keeps one DeviceMix per device while any voice plays on it, routes streams
to devices (``--route``), applies the settings kept by micwire.receiver.mixstate, and
watches the devices: one that stalls or goes away is said, and one that went away is
reopened. Locks are held only to move samples and to change the set of voices; a voice
whose pull fails plays silence and counts it, and never silences the others.
"""

from __future__ import annotations

import asyncio
import atexit
import fnmatch
import itertools
import logging
import threading
import time
from typing import Any

import numpy as np

from ..common.devices import sounddevice
from ..common.errors import DeviceError
from ..common.mixer import MasterSettings, Mixer, MixSettings
from .mixstate import MixState
from .voice import Voice

CLOSE_TIMEOUT_S = 5.0
#: A mix has at most this many channels (stereo: a headset, a pair of speakers).
MAX_CHANNELS = 2
#: A mix runs at least this fast (else at the device's default rate).
MIN_MIX_RATE_HZ = 44_100
#: A device that has not asked for audio this long while streams play on it has stalled.
STALL_S = 2.0
#: How soon a device that went away is tried again; the wait doubles up to RETRY_MAX_S.
RETRY_S = 3.0
RETRY_MAX_S = 60.0
#: PortAudio's host API whose devices do not come back within one process: its JACK client
#: outlives a JACK server that went away (a reopen fails, and prints an error each time).
NO_REOPEN_HOST_API = "JACK Audio Connection Kit"
#: The mix's meter falls back by this much per second after a peak (a PPM's fall-back).
METER_FALL_DB_PER_S = 20.0
log = logging.getLogger("micwire.receiver")


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
        #: stopped: unplugged, its sound server ended), tried again now and then
        self.state = "playing"
        self.retry_at = 0.0
        self.retry_s = RETRY_S
        self.reopens = sd.query_hostapis(int(info["hostapi"]))["name"] != NO_REOPEN_HOST_API
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
        """``wanted`` if the device takes it, else its default rate. A low rate (a 16 kHz
        stream) is never the mix's: the streams that join later would play through it."""
        if wanted < MIN_MIX_RATE_HZ:
            return default
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
            # a device that plays nothing shows no level (not the last one it played)
            "peak_dbfs": (
                round(20 * float(np.log10(max(self.meter, 1e-5))), 1)
                if self.state == "playing"
                else None
            ),
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

    def plays_on(self, device: str) -> bool:
        """Is a mix open on the device of that name?"""
        return any(mix.name == device for mix in self._mixes.values())

    def views(self) -> list[dict[str, Any]]:
        """Every open device's mix, by name."""
        return sorted((mix.view() for mix in self._mixes.values()), key=lambda v: v["device"])

    def check(self, now: float) -> None:
        """Every second (the event loop): say when a device stalls or goes away and when
        it plays again; reopen one that went away (after RETRY_S, then less and less often),
        with its voices."""
        for device, mix in list(self._mixes.items()):
            if not mix.voices:
                continue
            if mix.gone or mix.state == "gone":
                if mix.state != "gone":
                    mix.state, mix.retry_at = "gone", now + mix.retry_s
                    again = (
                        f"it is tried again in {mix.retry_s:g} s, then less and less often"
                        if mix.reopens
                        else "a JACK server that went away is found again only by a new "
                        "receiver process: restart it to play again"
                    )
                    log.warning(
                        "output device %r stopped; the streams on it are recorded as ever; %s",
                        mix.name,
                        again,
                    )
                elif mix.reopens and now >= mix.retry_at:
                    mix.retry_s = min(RETRY_MAX_S, mix.retry_s * 2)
                    mix.retry_at = now + mix.retry_s
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
