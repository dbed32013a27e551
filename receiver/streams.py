"""The receiver's streams: who is live, who may come back, and who may take a name.

A stream is known by its name exactly as sent. Its first connection gets a random resume
secret in the accept; only a connection presenting that secret may continue the stream
(after a broken link, a restart of the receiver, or to replace its own half-open
connection). Anyone else asking for a name in use is refused for now (1013: try again
later) with the reason.

Limits: at most ``max_streams`` live streams (a proven resume always gets its own slot
back), at most ``parked_limit`` streams waiting for their sender (the oldest is finalised
to make room). A stream that never sent audio leaves nothing behind: files are created on
its first audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..common.alerts import AlertRules, StreamAlerts
from ..common.assembly import AssemblyStats, Depacketizer, RealTimeBound, Segment
from ..common.audiofile import get_format
from ..common.codecs import make_decoder
from ..common.errors import AudioFormatError, DeviceError, MicwireError, StorageError
from ..common.levels import LevelMeter
from ..common.protocol import Accept, Hello, Packet
from ..common.routing import owner
from ..common.stats import StreamFigures
from . import logs
from .config import ReceiverConfig
from .holds import Holder
from .listeners import Listener
from .playback import Playback
from .recording import Recording
from .storage import (
    SENDER_RESTARTED,
    Previous,
    find_previous,
    name_reserved,
    resumable_outcome,
    secret_digest,
    write_json,
)

log = logging.getLogger("micwire.receiver")
#: Lost frames played as codec concealment before live playback falls back to a fade.
LIVE_CONCEAL_FRAMES = 5
#: Live-playback counters that add up over a stream's connections (each connection opens
#: the sound device afresh: a stream waiting for its sender holds none).
PLAYBACK_COUNTERS = (
    "underruns",
    "underrun_samples",
    "late_packets",
    "late_samples",
    "lost_samples",
    "skipped_samples",
    "start_skipped_samples",
    "concealed_samples",
    "device_underflows",
    "callback_errors",
)
#: Silence a stream may ask for beyond the time since it began.
GAP_MARGIN_S = 2.0
#: How long a proven resume waits for the stream's old, half-open connection to let go.
TAKEOVER_WAIT_S = 2.0


class Refusal(MicwireError):
    """A hello the receiver will not serve: for good (1008) or for now (1013; then perhaps
    when to try again)."""

    def __init__(
        self, reason: str, retry: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after_s = retry_after_s

    @classmethod
    def in_use(cls, name: str, holder: Holder) -> Refusal:
        now = time.time()
        return cls(holder.reason(name, now), True, holder.retry_after_s(now))


class Attachment:
    """What a stream needs from the connection currently carrying it."""

    def __init__(self, abort: Callable[[], None]) -> None:
        self.abort = abort
        #: Another connection of the same stream took over; this one must leave it alone.
        self.replaced = False
        self.detached = asyncio.Event()
        self.depacketizer: Depacketizer | None = None
        self.live: Depacketizer | None = None


def log_key(name: str, stream_id: str) -> str:
    """What a stream's log lines count against (logs.py): its name and its sender's id."""
    return f"{name}/{stream_id}"


class Stream:
    """One stream across its connections: identity, recording, playback, figures."""

    def __init__(
        self,
        config: ReceiverConfig,
        hello: Hello,
        peer: str,
        secret: str,
        origin: int | None,
        bound: RealTimeBound,
        previous: Previous | None = None,
        output_device: int | None = None,
        alert_rules: AlertRules | None = None,
    ) -> None:
        self.config = config
        self.name = hello.stream
        self.params = hello.params
        self.stream_id = hello.stream_id
        self.protocol = hello.version
        self.secret_sha256 = secret_digest(secret) if secret else ""
        self.peer = peer
        self.software = hello.software
        self.start = datetime.fromtimestamp(hello.start_time_us / 1e6, timezone.utc)
        self.received = datetime.now(timezone.utc)
        #: When the receiver first saw this stream (s since the Unix epoch; carried over
        #: from the sidecar when a restarted receiver continues it).
        self.first_seen = time.time()
        if previous is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                first = datetime.fromisoformat(previous.data["received_utc"]).timestamp()
                self.first_seen = min(self.first_seen, first)
        #: Where the recording starts on the stream's timeline (None: at the first packet).
        self.origin = origin
        #: Where the timeline has got to (what the recording holds or has queued).
        self.position = origin if origin is not None else 0
        self.bound = bound
        self.previous = previous
        self.output_device = output_device
        self.recording: Recording | None = None
        self.playback: Playback | None = None
        self.levels = LevelMeter()
        self.totals = AssemblyStats()
        #: How the connection of a sender back after the stream ended complete ended.
        self.came_back = ""
        self.state = "live"  # live, parked, ended
        self.outcome = "open"
        # one more than the recording it continues had: the sender reconnected to get here
        self._reconnects = 0 if previous is None else previous.reconnects + 1
        self.network_ms = 0.0  # arrival minus capture time of the newest packet
        self.attachment: Attachment | None = None
        self.expiry: asyncio.Task[None] | None = None
        #: When its connection broke and it began waiting for its sender (Unix seconds).
        self.parked_at: float | None = None
        self.created = time.monotonic()
        self.paths: list[str] = []
        #: Live-playback figures of the last connection (kept once playback stops).
        self.last_playback: dict[str, Any] | None = None
        self._closing: asyncio.Future[None] | None = None
        #: Set when the stream ends: its live playback stopped (played out, device closed).
        self.playback_stopped: asyncio.Future[None] | None = None
        self._playback_totals: dict[str, int] = {}
        self.listeners: set[Listener] = set()
        self.listener_dropped = 0  # packets dropped for listeners that have left
        self.alerts = StreamAlerts(self.name, alert_rules or AlertRules())
        self.ended_at: float | None = None
        self.ended_utc: float | None = None
        self._seq = 0  # sequence numbers of decoded packets made for PCM listeners
        self._callback_errors_seen = 0

    @property
    def reconnects(self) -> int:
        """Its sender's reconnections, over every part (the sidecar keeps the count)."""
        return self._reconnects

    @reconnects.setter
    def reconnects(self, count: int) -> None:
        self._reconnects = count
        if self.recording is not None:
            self.recording.reconnects = count

    @property
    def resumable(self) -> bool:
        return bool(self.secret_sha256)

    def proves(self, hello: Hello) -> bool:
        """Is ``hello`` this stream's own sender coming back?"""
        return (
            hello.resuming
            and bool(hello.resume_secret)
            and self.resumable
            and hmac.compare_digest(secret_digest(hello.resume_secret), self.secret_sha256)
            and hello.stream_id == self.stream_id
            and hello.params == self.params
        )

    @property
    def log_key(self) -> str:
        return log_key(self.name, self.stream_id)

    @property
    def ended_before(self) -> bool:
        """Continues a stream that had ended complete: its sender is back only to hear
        that confirmed (the "done" did not reach it), with nothing new to record."""
        return self.previous is not None and self.previous.complete and not self.has_audio

    @property
    def shown(self) -> bool:
        """Is this a stream people see (page, /metrics, stats, alerts)? Only once audio
        came, or it continues a recording: a bare hello, or a connection whose first packet
        was malformed, is a connection counted and logged, not a stream listed."""
        return self.has_audio or self.previous is not None

    @property
    def has_audio(self) -> bool:
        return (
            self.recording is not None
            or self.totals.samples > 0
            or (
                self.attachment is not None
                and self.attachment.depacketizer is not None
                and self.attachment.depacketizer.stats.samples > 0
            )
        )

    # --- connections ----------------------------------------------------------------------
    def attach(self, attachment: Attachment) -> None:
        """A connection now carries this stream: a fresh codec stream from ``position``."""
        self.attachment = attachment
        self.state = "live"
        start = self.position if self.origin is not None else None
        attachment.depacketizer = Depacketizer(
            self.params, make_decoder(self.params), start, gap_budget=self._gap_budget
        )
        if self.output_device is not None and self.playback is None:
            self._callback_errors_seen = 0
            try:
                self.playback = Playback(
                    self.output_device,
                    self.params.rate_hz,
                    self.params.channels,
                    self.config.latency_ms,
                )
            except DeviceError as exc:
                self.output_device = None
                log.warning("stream %r: playback off: %s", self.name, exc)
        if self.playback is not None and attachment.depacketizer.decoder.can_conceal:
            attachment.live = Depacketizer(
                self.params, make_decoder(self.params), start, conceal_frames=LIVE_CONCEAL_FRAMES
            )
        for listener in self.listeners:  # a new codec stream: listeners reset their decoder
            self.start_listener(listener)

    def _gap_budget(self) -> int:
        """Silence the stream may still ask for: no more than the time since it began
        (plus a margin), less what it had already (a capture queue or a spool that lost
        audio only ever loses real time)."""
        elapsed = time.time() - self.first_seen + GAP_MARGIN_S
        return int(elapsed * self.params.rate_hz) - self.stats().gap_samples

    def detach(self) -> None:
        """The connection is done with the stream; keep its figures."""
        attachment = self.attachment
        if attachment is None:
            return
        if attachment.depacketizer is not None:
            stats = attachment.depacketizer.stats
            for name in vars(self.totals):
                setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        self.attachment = None

    def stats(self) -> AssemblyStats:
        """Totals over every connection so far, the current one included."""
        total = AssemblyStats(**vars(self.totals))
        if self.attachment is not None and self.attachment.depacketizer is not None:
            current = self.attachment.depacketizer.stats
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(current, name))
        return total

    async def on_packet(self, packet: Packet) -> None:
        attachment = self.attachment
        assert attachment is not None and attachment.depacketizer is not None
        now = time.monotonic()
        if packet.capture_time_us:
            self.network_ms = time.time() * 1000 - packet.capture_time_us / 1000
        depacketizer = attachment.depacketizer
        segments = depacketizer.push(packet, self.bound.limit(now), self.bound.allowance)
        if self.origin is None:
            self.origin = depacketizer.start
        # live playback of a codec with concealment decodes separately, so a lost frame is
        # played as PLC/FEC audio while the recording keeps exact silence
        live = attachment.live.push(packet) if attachment.live is not None else segments
        if self.listeners:
            self._feed_listeners(packet, segments, depacketizer.position)
        if segments:
            await self._record(segments, now)
        self.position = depacketizer.position
        if self.playback is not None:
            self._play(live, depacketizer.position)

    async def _record(self, segments: list[Segment], now: float) -> None:
        if self.recording is None and self.config.record_dir is not None:
            self.recording = await self._open_recording()
        for segment in segments:
            if self.recording is not None:
                await self.recording.write(segment)
            if not isinstance(segment, int):
                self.levels.add(segment, now)

    # --- listeners ------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self.listeners.add(listener)
        self.start_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self.listener_dropped += listener.dropped_packets

    def start_listener(self, listener: Listener) -> None:
        p = self.params
        codec = "pcm" if listener.pcm else p.codec
        pre_skip = 0 if listener.pcm else p.pre_skip
        listener.start(codec, p.rate_hz, p.channels, p.frame_ms, pre_skip)

    def _feed_listeners(self, packet: Packet, segments: list[Segment], end: int) -> None:
        """Each listener gets the packet as it came, or, if it asked for PCM and the stream
        is Opus, what the packet decoded to."""
        raw: bytes | None = None
        pcm: list[bytes] | None = None
        for listener in self.listeners:
            if listener.pcm and self.params.codec != "pcm":
                if pcm is None:
                    pcm = self._pcm_packets(packet, segments, end)
                for data in pcm:
                    listener.offer(data, (len(data) - 24) // (2 * self.params.channels))
            else:
                if raw is None:
                    raw = packet.serialize()
                listener.offer(raw, packet.samples)

    def _pcm_packets(self, packet: Packet, segments: list[Segment], end: int) -> list[bytes]:
        out = []
        at = end - sum(s if isinstance(s, int) else len(s) for s in segments)
        for segment in segments:
            if not isinstance(segment, int):
                payload = segment.astype("<i2").tobytes()
                pcm = Packet(self._seq, at, len(segment), payload, packet.capture_time_us)
                out.append(pcm.serialize())
                self._seq += 1
            at += segment if isinstance(segment, int) else len(segment)
        return out

    def _play(self, live: list[Segment], end: int) -> None:
        assert self.playback is not None
        length = sum(s if isinstance(s, int) else len(s) for s in live)
        at = end - length  # the live timeline ends where the recording's does
        for segment in live:
            if not isinstance(segment, int):
                self.playback.push(at, segment)
            at += segment if isinstance(segment, int) else len(segment)

    async def _open_recording(self) -> Recording:
        cfg = self.config
        assert cfg.record_dir is not None and self.origin is not None
        previous = self.previous
        info = {
            "stream": self.name,
            "stream_id": self.stream_id,
            "start_utc": self.start.isoformat(),
            "received_utc": self.received.isoformat(),
            "codec": self.params.codec,
            "frame_ms": self.params.frame_ms,
            "peer": self.peer,
            "software": self.software,
            "receiver": f"micwire/{__version__}",
            "resume_secret_sha256": self.secret_sha256,
            "clock_position": self.bound.position,
            "clock_utc": time.time() - (time.monotonic() - self.bound.time),
        }
        if previous is not None:
            info["received_utc"] = previous.data.get("received_utc", info["received_utc"])
        recording = await Recording.create(
            cfg.record_dir,
            self.name,
            cfg.formats,
            self.params.rate_hz,
            self.params.channels,
            self.start,
            info,
            self.origin,
            previous.sidecar if previous is not None else None,
            previous.data["parts"] if previous is not None else None,
        )
        recording.reconnects = self.reconnects
        self.paths = [p.name for p in recording.paths]
        log.info("stream %r: recording to %s", self.name, ", ".join(self.paths))
        return recording

    async def close(self, outcome: str) -> None:
        """Finalise for good: files, sidecar, playback."""
        self.state = "ended"
        self.outcome = outcome
        self.ended_at = time.monotonic()
        self.ended_utc = round(time.time(), 3)
        try:
            if self.recording is not None:
                await self.recording.close(outcome)
            elif self.ended_before:  # its sidecar already says complete: it stays so
                self.outcome, self.came_back = "complete", outcome
            elif self.previous is not None:  # continued, but nothing new: the first part's
                await asyncio.to_thread(self._close_previous, outcome)  # entry is updated
        except StorageError as exc:
            self.outcome = f"recording failed: {exc}"
            raise
        finally:
            # the sender's "done" confirms the recording: the sound device plays out and
            # closes in its own time (a stalled sound server must not hold the sender up)
            self.playback_stopped = asyncio.ensure_future(
                self.stop_playback(drain=outcome == "complete")
            )

    def _close_previous(self, outcome: str) -> None:
        assert self.previous is not None
        data = self.previous.data
        data["outcome"] = outcome
        data["samples"] = self.previous.samples
        write_json(self.previous.sidecar, data)

    async def stop_playback(self, drain: bool = False) -> None:
        if self.playback is not None:
            playback, self.playback = self.playback, None
            self._closing = asyncio.ensure_future(playback.close(drain=drain))
            await self._closing
            self.last_playback = playback.snapshot()
            for key in PLAYBACK_COUNTERS:  # a stream's glitches add up over its connections
                self._playback_totals[key] = (
                    self._playback_totals.get(key, 0) + self.last_playback[key]
                )

    async def settle(self) -> None:
        """Wait until a sound device being closed is closed (before opening another)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    def report_playback_errors(self) -> None:
        """Say so when live playback's callback failed (it plays silence and goes on)."""
        playback = self.playback
        if playback is not None and playback.callback_errors > self._callback_errors_seen:
            log.warning(
                "stream %r: live playback failed %d time(s) (played silence): %s",
                self.name,
                playback.callback_errors - self._callback_errors_seen,
                playback.last_callback_error,
            )
            self._callback_errors_seen = playback.callback_errors

    def figures(self, window_s: float = 1.0) -> StreamFigures:
        now = time.monotonic()
        stats = self.stats()
        peak, rms = self.levels.read(now, window_s)
        playback: dict[str, Any] = {}
        if self.playback is not None:
            playback = self.playback.snapshot()
            for key, total in self._playback_totals.items():
                playback[key] += total
            playback["latency_ms"] = round(
                self.network_ms + playback["buffer_ms"] + self.playback.output_latency_s * 1000, 1
            )
        return StreamFigures(
            time=time.time(),
            stream=self.name,
            peer=self.peer,
            codec=self.params.codec,
            rate_hz=self.params.rate_hz,
            channels=self.params.channels,
            state=self.state,
            seconds=(stats.samples + self.earlier_samples) / self.params.rate_hz,
            packets=stats.packets,
            gaps=stats.gaps,
            gap_samples=stats.gap_samples,
            duplicate_packets=stats.duplicate_packets,
            overlap_samples=stats.overlap_samples,
            reconnects=self.reconnects,
            peak_dbfs=peak,
            rms_dbfs=rms,
            network_ms=self.network_ms,
            playback=playback,
            write_backlog_s=self.recording.backlog_s if self.recording is not None else 0.0,
        )

    @property
    def page_state(self) -> str:
        if self.state == "parked":
            return "reconnecting"
        return self.state

    def check_alerts(self, now: float) -> list[Any]:
        """Once a second: the alert rules on the last second's levels and the state."""
        window = min(1.0, time.monotonic() - self.created)
        peak, rms = self.levels.read(time.monotonic(), window)
        state = self.state
        if state == "ended":  # ended by its own sender (a restarted one too): not down
            ended_well = self.outcome in ("complete", SENDER_RESTARTED)
            state = "ended_complete" if ended_well else "ended"
        return self.alerts.update(now, state, rms, peak, window)

    def view(self, window_s: float) -> dict[str, Any]:
        """What the monitor page shows of this stream (docs/PROTOCOL.md §10)."""
        line = self.figures(window_s).line()
        p = self.params
        view: dict[str, Any] = {
            key: line.get(key)
            for key in (
                "stream",
                "peer",
                "codec",
                "rate_hz",
                "channels",
                "seconds",
                "peak_dbfs",
                "rms_dbfs",
                "buffer_ms",
                "target_ms",
                "jitter_ms",
                "latency_ms",
                "drift_ppm",
                "packets",
                "gaps",
                "gap_samples",
                "underruns",
                "late_packets",
                "lost_samples",
                "concealed_samples",
                "duplicate_packets",
                "reconnects",
            )
        }
        # since the stream was first seen, by this receiver or one before it (a restart)
        end = self.ended_utc if self.ended_utc is not None else time.time()
        view.update(
            state=self.page_state,
            outcome=self.outcome,
            frame_ms=p.frame_ms,
            uptime_s=round(end - self.first_seen, 1),
            ended_utc=self.ended_utc,
            listeners=len(self.listeners),
            alerts=[
                {"kind": a.kind, "since": a.since, "message": a.message}
                for a in self.alerts.active.values()
            ],
            **self.recording_views(),
        )
        if self.state == "ended":  # no sound to measure, not a silence of -120 dBFS
            view.update(peak_dbfs=None, rms_dbfs=None)
        return view

    @property
    def recording_name(self) -> str | None:
        """The file the stream's "done" names: its latest part's first file."""
        if self.paths:
            return self.paths[0]
        if self.previous is None or not self.previous.data["parts"][-1]["files"]:
            return None
        return str(self.previous.data["parts"][-1]["files"][0])

    def recording_views(self) -> dict[str, Any]:
        """The stream's recording as the page shows it (docs/PROTOCOL.md §10): ``parts``,
        one per part in order (when it began by the sender's clock, how long it is, how it
        ended, its files and their formats), its ``sidecar``, and ``recordings``, every
        file in one list (what scripts read before parts were given)."""
        directory = self.config.record_dir
        if directory is None:
            return {"parts": [], "sidecar": None, "recordings": []}
        # a stream continued after a restart has its earlier parts
        # in the sidecar; the part being recorded here comes last
        parts: list[dict[str, Any]] = []
        if self.previous is not None:
            parts.extend(self.previous.data["parts"])
        if self.recording is not None:
            parts.append(self.recording.part())
        sidecar: str | None = None
        if self.recording is not None:
            sidecar = self.recording.sidecar.name
        elif self.previous is not None:
            sidecar = self.previous.sidecar.name
        start = self.start.timestamp()
        rate = self.params.rate_hz
        views: list[dict[str, Any]] = []
        every: list[dict[str, Any]] = []  # the files, without their format
        for number, part in enumerate(parts, 1):
            files: list[dict[str, Any]] = []
            for name in part.get("files", []):
                entry = _file_view(directory, name)
                if entry is not None:
                    every.append(entry)
                    files.append({**entry, "format": name.rpartition(".")[2].lower()})
            views.append(
                {
                    "part": number,
                    "start_utc": round(start + int(part["origin"]) / rate, 3),
                    "seconds": round(int(part["samples"]) / rate, 3),
                    "outcome": part.get("outcome"),
                    "files": files,
                }
            )
        sidecar_view = _file_view(directory, sidecar) if sidecar is not None else None
        return {
            "parts": views,
            "sidecar": sidecar_view,
            "recordings": every + ([sidecar_view] if sidecar_view is not None else []),
        }

    @property
    def earlier_samples(self) -> int:
        """The stream's samples in earlier parts (before a restart of the receiver)
        that its own counters do not hold."""
        if self.previous is None:
            return 0
        return self.previous.samples

    def summary(self) -> str:
        stats = self.stats()
        if self.ended_before:
            assert self.previous is not None
            recorded = self.previous.samples
            text = (
                f"stream {self.name!r} from {self.peer}: its sender came back to hear it "
                f"confirmed; it had ended complete ({recorded / self.params.rate_hz:.2f} s, "
                f"recorded to {', '.join(self.previous.data.get('files', []))})"
            )
            if self.came_back != "complete":  # what went wrong with that connection
                text += f"; that connection: {self.came_back}"
            return text
        seconds = stats.samples / self.params.rate_hz
        text = (
            f"stream {self.name!r} from {self.peer}: {self.outcome}; {seconds:.2f} s, "
            f"{stats.packets} packets, {stats.gaps} gaps ({stats.gap_samples} samples of silence)"
        )
        if stats.duplicate_packets or stats.overlap_samples:
            text += (
                f", {stats.duplicate_packets} duplicate packets "
                f"({stats.overlap_samples} samples already recorded, dropped)"
            )
        if stats.lead_in_packets or stats.lead_in_samples:
            text += (
                f", {stats.lead_in_samples / self.params.rate_hz:.2f} s of codec warm-up "
                "before the resume point (decoded, not recorded)"
            )
        if self.reconnects:
            text += f", {self.reconnects} reconnects"
        if self.previous is not None:
            whole = (stats.samples + self.earlier_samples) / self.params.rate_hz
            text += f" (with its earlier parts: {whole:.2f} s)"
        if self.paths:
            text += ", recorded to " + ", ".join(self.paths)
        return text


def _file_view(directory: Path, name: object) -> dict[str, Any] | None:
    """A file of the record directory as the page links it; None when it is not there (or
    the sidecar names something that is not a file of the directory)."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        return None
    try:
        size = (directory / name).stat().st_size
    except OSError:
        return None
    return {"name": name, "url": f"/recordings/{quote(name)}", "bytes": size}


class Streams:
    """Every stream the receiver knows: live and parked, by name."""

    def __init__(
        self,
        config: ReceiverConfig,
        output_device: int | None,
        on_finished: Callable[[Stream], Awaitable[None]],
        alert_rules: AlertRules | None = None,
    ) -> None:
        self.config = config
        self.alert_rules = alert_rules or AlertRules()
        self.output_device = output_device
        self.live: dict[str, Stream] = {}
        self.parked: dict[str, Stream] = {}
        self._on_finished = on_finished
        self.admitting: set[str] = set()  # names with a hello being answered
        #: Streams being finalised (files, sidecar), by name: set when done.
        self.finishing: dict[str, asyncio.Event] = {}
        #: Live playback of ended streams still playing out or closing its device.
        self.stopping_playback: set[asyncio.Future[None]] = set()
        #: With ``--workers N``: live streams on the other workers (the supervisor says),
        #: and who hears of this worker's own count when it changes.
        self.live_elsewhere = 0
        self.on_live: Callable[[int], None] | None = None
        #: The receiver is shutting down: streams are finalised, not parked.
        self.stopping = False
        #: Streams that ended without their last packet (their sender may come back to
        #: continue them): by name, with when they ended.
        self.ended: dict[str, tuple[float, Stream]] = {}
        self.started = time.time()

    def __len__(self) -> int:
        return len(self.live) + len(self.parked)

    def all(self) -> list[Stream]:
        return [*self.live.values(), *self.parked.values()]

    def shown(self) -> list[Stream]:
        """Live and parked streams that people see (:attr:`Stream.shown`)."""
        return [stream for stream in self.all() if stream.shown]

    async def admit(self, hello: Hello, peer: str, attachment: Attachment) -> Accept:
        """Attach a connection to the stream its hello names: a new stream, or the
        stream's own sender coming back. Raises Refusal."""
        name = hello.stream
        cfg = self.config
        if cfg.workers > 1 and owner(name, cfg.workers) != cfg.worker:
            # a connection on a path without the name (routed to any worker)
            raise Refusal(
                f"this receiver runs {cfg.workers} workers: a sender connects to "
                "/stream/<name> (URL-encoded), which takes it to the worker of its stream"
            )
        if name in self.admitting:
            raise Refusal(f"stream name {name!r} is being taken by another connection", True)
        self.admitting.add(name)
        try:
            stream = await self.known(name)
            if stream is not None and not stream.proves(hello):
                raise Refusal.in_use(name, self.holder(stream))
            # admitted: its lines count against the stream (logs.py): this sender's, so that
            # another taking the name after it has its own lines shown
            logs.STREAM.set(log_key(name, hello.stream_id))
            if stream is not None and not await self._take_back(stream, peer, hello.restarted):
                # its last packet came while its old connection was let go: it is
                # finished, and continued like any stream that ended here (a new part)
                stream = await self.known(name)
            if stream is not None:
                accept_at: int | None = stream.position
                secret: str | None = hello.resume_secret
            else:
                stream, accept_at, secret = await self._new(hello, peer)
            await stream.settle()
            stream.attach(attachment)
            self.live[name] = stream
            self._live_changed()
            return Accept(
                name,
                stream.paths[0] if stream.paths else None,
                resume_timestamp=accept_at,
                resume_secret=secret,
            )
        finally:
            self.admitting.discard(name)

    async def known(self, name: str) -> Stream | None:
        """The live or parked stream of this name, once a finalisation in progress is
        over (a sender coming back as its stream ends must find the sidecar complete)."""
        while (finishing := self.finishing.get(name)) is not None:
            await finishing.wait()
        return self.live.get(name) or self.parked.get(name)

    def _live_changed(self) -> None:
        if self.on_live is not None:
            self.on_live(len(self.live))

    def holder(self, stream: Stream) -> Holder:
        """Whose the live or parked ``stream``'s name is, and until when."""
        if stream.state != "parked" or stream.parked_at is None:
            return Holder(stream.peer, since=stream.first_seen)
        grace = self.config.resume_grace_s
        until = stream.parked_at + grace
        if stream.resumable and resumable_outcome(stream.outcome):
            until += grace  # once finalised, its name is held as long again (_finish)
        return Holder(stream.peer, until=until)

    def held(self, name: str) -> bool:
        """Is the name held for a stream that ended here and whose sender may come back?"""
        ended = self.ended.get(name)
        return ended is not None and time.time() - ended[0] < self.config.resume_grace_s

    async def let_go(self, stream: Stream) -> bool:
        """Cut the stream's connection, if it has one: no close handshake (the link may be
        dead); wait a little for its handler to let go. False if that connection ended the
        stream meanwhile (its last packet was still to be read): then once it is
        finalised."""
        old = stream.attachment
        if old is not None:
            old.replaced = True
            old.abort()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(old.detached.wait(), TAKEOVER_WAIT_S)
            stream.detach()
        if stream.state == "ended":
            await self.known(stream.name)
            return False
        return True

    async def _take_back(self, stream: Stream, peer: str, restarted: bool = False) -> bool:
        """The stream's own sender is back: from parked, or replacing its own connection
        (a half-open link the receiver has not noticed yet). False if the old connection
        ended the stream (its last packet) while it was let go."""
        if stream.expiry is not None:
            stream.expiry.cancel()
            stream.expiry = None
        if stream.attachment is not None:
            log.warning("stream %r: %s replaces its own stale connection", stream.name, peer)
            if not await self.let_go(stream):
                return False
        self.parked.pop(stream.name, None)
        stream.reconnects += 1
        stream.peer = peer
        stream.outcome = "open"
        if restarted:
            log.info(
                "stream %r: its sender restarted (%s) and ends it at sample %d",
                stream.name,
                peer,
                stream.position,
            )
        else:
            log.info(
                "stream %r: %s is back; resuming at sample %d", stream.name, peer, stream.position
            )
        return True

    async def _new(self, hello: Hello, peer: str) -> tuple[Stream, int | None, str | None]:
        cfg = self.config
        for name in cfg.formats if cfg.record_dir is not None else ():
            try:  # refused now, for good, rather than failing on the first audio, again and again
                get_format(name).check(hello.params.rate_hz, hello.params.channels)
            except AudioFormatError as exc:
                raise Refusal(f"this receiver records {name}: {exc}") from exc
        previous: Previous | None = None
        proven = False
        if hello.resuming and hello.resume_secret and cfg.record_dir is not None:
            previous = await asyncio.to_thread(
                find_previous,
                cfg.record_dir,
                hello.stream,
                hello.stream_id,
                hello.resume_secret,
                hello.params,
            )
            proven = previous is not None
        if not proven and (holder := await self._reserved(hello)) is not None:
            raise Refusal.in_use(hello.stream, holder)
        if not proven and len(self.live) + self.live_elsewhere >= cfg.max_streams:
            raise Refusal(f"receiver is full ({cfg.max_streams} streams)", retry=True)
        ended = self.ended.get(hello.stream)
        if ended is not None and (proven or ended[1].proves(hello)):
            # the sender the name was held for is back: it is its own again (and once this
            # stream ends, e.g. because that sender restarted, nobody is waited for)
            del self.ended[hello.stream]
        rate = hello.params.rate_hz
        now = time.monotonic()
        if previous is not None:
            # the wall-clock bound carries over from the stream's first connection
            data = previous.data
            clock_position, clock_utc = data.get("clock_position"), data.get("clock_utc")
            if type(clock_position) is int and isinstance(clock_utc, float):
                since = max(0.0, time.time() - clock_utc)
                bound = RealTimeBound(rate, clock_position + int(since * rate), now)
            else:
                bound = RealTimeBound(rate, previous.position, now)
            origin: int | None = previous.position
            if hello.restarted:
                log.info(
                    "stream %r: its sender restarted and ends it at sample %d (%s)",
                    hello.stream,
                    previous.position,
                    previous.sidecar.name,
                )
            elif previous.complete:
                log.info(
                    "stream %r: ended complete at sample %d (%s); its sender is back",
                    hello.stream,
                    previous.position,
                    previous.sidecar.name,
                )
            else:
                log.info(
                    "stream %r: continuing %s from sample %d in a new part",
                    hello.stream,
                    previous.sidecar.name,
                    previous.position,
                )
        else:
            claimed = int(hello.claimed_age_us * rate / 1_000_000)
            bound = RealTimeBound(rate, claimed, now)
            if hello.resuming:  # a stream this receiver knows nothing of: it starts anywhere
                origin = None
            else:  # a new stream brings at most max_backlog_s captured before it connected
                origin = max(0, claimed - int(cfg.max_backlog_s * rate))
        if proven:  # the sender proved it owns the stream with its secret
            secret: str | None = hello.resume_secret
        else:  # version 1 senders cannot resume: no secret
            secret = secrets.token_urlsafe(24) if hello.version >= 2 else None
        stream = Stream(
            cfg,
            hello,
            peer,
            secret or "",
            origin,
            bound,
            previous,
            self.output_device,
            self.alert_rules,
        )
        return stream, origin, secret

    async def release(
        self, stream: Stream, attachment: Attachment, outcome: str, lost: bool
    ) -> None:
        """A connection ended. Its stream is parked for its sender to come back (the link
        was lost and the stream can be resumed), or finalised."""
        try:
            if attachment.replaced or stream.attachment is not attachment:
                return  # another connection of the same stream carries on
            stream.detach()
            if stream.state == "ended":
                return  # finished already (its last packet came)
            if self.stopping:  # its connection ended because the receiver closed it (1001)
                await self.finish(stream, "interrupted (the receiver stopped)")
            elif lost and stream.resumable and stream.has_audio:
                await self._park(stream, outcome)
            else:
                await self.finish(stream, outcome)
        finally:
            attachment.detached.set()

    async def _park(self, stream: Stream, outcome: str) -> None:
        # parked before anything is awaited: a sender coming back at once must find it
        self.live.pop(stream.name, None)
        self._live_changed()
        self.parked[stream.name] = stream
        stream.state = "parked"
        stream.parked_at = time.time()
        stream.outcome = outcome
        grace = self.config.resume_grace_s
        log.warning(
            "stream %r: %s; keeping it open %g s for the sender to come back",
            stream.name,
            outcome,
            grace,
        )

        async def expire() -> None:
            await asyncio.sleep(grace)
            if self.parked.get(stream.name) is stream:
                await self.finish(stream, stream.outcome)

        stream.expiry = asyncio.create_task(expire())
        await stream.stop_playback()  # a parked stream holds no sound device
        while len(self.parked) > self.config.parked_limit:
            oldest = next(iter(self.parked.values()))
            with logs.about(oldest.peer, oldest.log_key):  # its lines, not the parker's
                log.warning("stream %r: too many streams waiting; finalising it", oldest.name)
                await self.finish(oldest, oldest.outcome)

    async def _reserved(self, hello: Hello) -> Holder | None:
        """Is the name held for a stream whose sender may still come back? (Ended here
        without its last packet, or interrupted by a restart of the receiver: for a
        grace period from then, only the stream's own sender may take the name.) Whose
        it is, and until when."""
        grace = self.config.resume_grace_s
        ended = self.ended.get(hello.stream)
        if ended is not None and time.time() - ended[0] < grace:
            if ended[1].proves(hello):
                return None
            return Holder(ended[1].peer, until=ended[0] + grace)
        if self.config.record_dir is None:
            return None
        return await asyncio.to_thread(
            name_reserved, self.config.record_dir, hello.stream, self.started, grace
        )

    async def finish(self, stream: Stream, outcome: str) -> None:
        """Finalise a stream for good: files, sidecar, report."""
        done = self.finishing[stream.name] = asyncio.Event()
        try:
            await self._finish(stream, outcome)
        finally:
            if self.finishing.get(stream.name) is done:
                del self.finishing[stream.name]
            done.set()

    async def _finish(self, stream: Stream, outcome: str) -> None:
        # a connection that never sent audio holds no name: a bare hello must not lock a
        # room's own sender out of it for the grace
        held = (
            stream.resumable
            and stream.shown
            and resumable_outcome(outcome)
            and not stream.ended_before
        )
        if held:
            self.ended[stream.name] = (time.time(), stream)
            while len(self.ended) > 1000:
                del self.ended[next(iter(self.ended))]
        if self.live.get(stream.name) is stream:
            del self.live[stream.name]
            self._live_changed()
        if self.parked.get(stream.name) is stream:
            del self.parked[stream.name]
        if stream.expiry is not None and stream.expiry is not asyncio.current_task():
            stream.expiry.cancel()
        try:
            await stream.close(outcome)
        except MicwireError as exc:
            log.error("stream %r: %s", stream.name, exc)
        except Exception:
            log.exception("stream %r: could not finalise", stream.name)
        stopped = stream.playback_stopped
        if stopped is not None and not stopped.done():  # for the receiver's stop to wait on
            self.stopping_playback.add(stopped)
            stopped.add_done_callback(self.stopping_playback.discard)
        await self._on_finished(stream)
