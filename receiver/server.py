"""The receiver: a WebSocket server with one session per connection.

Each session checks the hello, then turns packets into timeline segments
(:class:`~micwire.common.assembly.Depacketizer`) that go to the recording and to live
playback. A bad connection is closed with a close code and a reason; it never takes down
the server or another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any

import soundfile as sf
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from micwire.common.assembly import Depacketizer
from micwire.common.audiofile import get_format
from micwire.common.codecs import make_decoder
from micwire.common.errors import (
    DeviceError,
    MicwireError,
    ParameterError,
    ProtocolError,
    StorageError,
)
from micwire.common.levels import LevelMeter
from micwire.common.names import sanitize_stream_name
from micwire.common.protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    Accept,
    Hello,
    Packet,
    Refuse,
    close_reason,
    max_message_bytes,
)
from micwire.receiver.playback import Playback
from micwire.receiver.recording import Recording
from micwire.sender.portaudio import resolve_device

log = logging.getLogger("micwire.receiver")
#: Lost frames played as codec concealment before live playback falls back to a fade.
LIVE_CONCEAL_FRAMES = 5


@dataclass
class ReceiverConfig:
    host: str | None = None  # None: every interface
    port: int = 8765
    record_dir: Path | None = None
    formats: tuple[str, ...] = ("wav",)
    play: bool = True
    output_device: str | None = None
    latency_ms: float = 20.0
    hello_timeout_s: float = 10.0
    max_streams: int = 16
    #: How long a stream whose connection broke stays open for its sender to come back
    #: (same stream_id): the recording then continues in the same file, gap-free.
    resume_grace_s: float = 60.0
    #: Called with every stream's live figures once per ``stats_interval_s``.
    on_stats: Callable[[list[dict[str, Any]]], None] | None = None
    #: Write one JSON object per stream per ``stats_interval_s`` to this file.
    stats_json: Path | None = None
    stats_interval_s: float = 1.0
    #: Shared secret senders must present as ``Authorization: Bearer <token>``.
    token: str | None = None
    #: TLS certificate chain and private key (PEM); both or neither.
    certfile: Path | None = None
    keyfile: Path | None = None


@dataclass
class SessionReport:
    stream: str
    peer: str
    codec: str = ""
    rate_hz: int = 0
    channels: int = 0
    paths: list[Path] = field(default_factory=list)
    packets: int = 0
    samples: int = 0
    gaps: int = 0
    gap_samples: int = 0
    playback: dict[str, Any] | None = None
    outcome: str = "open"
    reconnects: int = 0

    @property
    def seconds(self) -> float:
        return self.samples / self.rate_hz if self.rate_hz else 0.0

    def summary(self) -> str:
        text = (
            f"stream {self.stream!r} from {self.peer}: {self.outcome}; {self.seconds:.2f} s, "
            f"{self.packets} packets, {self.gaps} gaps ({self.gap_samples} samples of silence)"
        )
        if self.playback is not None:
            p = self.playback
            text += (
                f"; playback: {p['underruns']} underruns, {p['concealed_samples']} samples "
                f"concealed, {p['late_packets']} late, drift {p['drift_ppm']:+.0f} ppm"
            )
        if self.paths:
            text += ", recorded to " + ", ".join(str(p) for p in self.paths)
        return text


class Session:
    """One connected sender."""

    def __init__(
        self,
        receiver: Receiver,
        hello: Hello,
        peer: str,
        ws: ServerConnection | None = None,
        origin: int | None = 0,
        previous: tuple[Path, int] | None = None,
    ) -> None:
        # previous: (sidecar, position) of this stream's earlier part, from a receiver that
        # was restarted; this part continues the timeline from that position
        resume_at = previous[1] if previous else None
        self.ws = ws
        self.stream_id = hello.stream_id
        self.detached = asyncio.Event()  # set when its connection's handler is done with it
        self.expiry: asyncio.Task[None] | None = None
        cfg = receiver.config
        self.params = hello.params
        self.name = sanitize_stream_name(hello.stream)
        self.depacketizer = Depacketizer(
            self.params, make_decoder(self.params), origin, resume_at=resume_at
        )
        self.report = SessionReport(
            self.name, peer, self.params.codec, self.params.rate_hz, self.params.channels
        )
        self.recording: Recording | None = None
        if cfg.record_dir is not None:
            start = datetime.fromtimestamp(hello.start_time_us / 1e6, timezone.utc)
            self.recording = Recording(
                cfg.record_dir,
                hello.stream,
                cfg.formats,
                self.params.rate_hz,
                self.params.channels,
                start,
                info={
                    "codec": self.params.codec,
                    "frame_ms": self.params.frame_ms,
                    "peer": peer,
                    "software": hello.software,
                    "stream_id": hello.stream_id,
                    "origin": resume_at or 0,
                },
                previous_sidecar=previous[0] if previous else None,
            )
            self.report.paths = list(self.recording.paths)
        self.playback: Playback | None = None
        if receiver.output_device is not None:
            try:
                self.playback = Playback(
                    receiver.output_device,
                    self.params.rate_hz,
                    self.params.channels,
                    cfg.latency_ms,
                )
            except DeviceError as exc:
                log.warning("stream %r: playback off: %s", self.name, exc)
        self.live: Depacketizer | None = None
        if self.playback is not None and self.depacketizer.decoder.can_conceal:
            self.live = Depacketizer(
                self.params,
                make_decoder(self.params),
                origin,
                conceal_frames=LIVE_CONCEAL_FRAMES,
                resume_at=resume_at,
            )
        self.position = 0
        self.peer = peer
        self.levels = LevelMeter()
        self.started = time.monotonic()
        self.network_ms = 0.0  # arrival minus capture time of the newest packet

    def stats(self) -> dict[str, Any]:
        """One line of live figures (``--stats-json``)."""
        d = self.depacketizer.stats
        peak, rms = self.levels.read()
        line: dict[str, Any] = {
            "time": round(time.time(), 3),
            "stream": self.name,
            "peer": self.peer,
            "codec": self.params.codec,
            "seconds": round(d.samples / self.params.rate_hz, 3),
            "packets": d.packets,
            "gaps": d.gaps,
            "gap_samples": d.gap_samples,
            "peak_dbfs": round(peak, 1),
            "rms_dbfs": round(rms, 1),
            # capture (sender clock) to arrival (receiver clock): meaningful when the two
            # clocks are synchronised (NTP), as they are on one machine
            "network_ms": round(self.network_ms, 1),
        }
        if self.playback is not None:
            line.update(self.playback.snapshot())
            line["latency_ms"] = round(
                self.network_ms + line["buffer_ms"] + self.playback.output_latency_s * 1000, 1
            )
        return line

    async def on_packet(self, packet: Packet) -> None:
        if packet.capture_time_us:
            self.network_ms = time.time() * 1000 - packet.capture_time_us / 1000
        segments = self.depacketizer.push(packet)
        # live playback of a codec with concealment decodes separately, so a lost frame is
        # played as PLC/FEC audio while the recording keeps exact silence
        live = self.live.push(packet) if self.live is not None else segments
        for segment in segments:
            if self.recording is not None:
                await self.recording.write(segment)
            if not isinstance(segment, int):
                self.levels.add(segment)
        for segment in live:
            if isinstance(segment, int):
                self.position += segment  # the jitter buffer sees the jump, fades, conceals
            else:
                if self.playback is not None:
                    self.playback.push(self.position, segment)
                self.position += len(segment)

    async def close(self) -> SessionReport:
        try:
            if self.recording is not None:
                await self.recording.close(self.report.outcome)
        finally:
            if self.playback is not None:
                await self.playback.close(drain=True)
                self.report.playback = self.playback.snapshot()
            stats = self.depacketizer.stats
            self.report.packets, self.report.samples = stats.packets, stats.samples
            self.report.gaps, self.report.gap_samples = stats.gaps, stats.gap_samples
        return self.report


class Receiver:
    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        for name in config.formats:
            get_format(name)
        if config.record_dir is not None:
            try:
                config.record_dir.mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=config.record_dir)  # noqa: SIM115
                probe.close()
            except OSError as exc:
                raise StorageError(
                    f"cannot record to {config.record_dir}: {exc.strerror or exc}"
                ) from exc
        self.output_device: int | None = None
        if config.play:
            try:
                self.output_device = resolve_device(config.output_device, "output")
            except DeviceError as exc:
                if config.output_device is not None:
                    raise
                log.warning("playback off: %s (use --no-play to silence this)", exc)
        self.sessions: set[Session] = set()
        self.parked: dict[str, Session] = {}  # by stream_id: waiting for their sender
        self._stopping = False
        self.reports: list[SessionReport] = []
        self.port: int | None = None
        self._ssl: ssl.SSLContext | None = None
        if (config.certfile is None) != (config.keyfile is None):
            raise ParameterError("TLS needs both --cert and --key")
        if config.certfile is not None:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                self._ssl.load_cert_chain(config.certfile, config.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load the TLS certificate or key: {exc}") from exc

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        """Serve until ``stop`` is set; then close every stream and finalise its files."""
        cfg = self.config
        async with serve(
            self._handle,
            cfg.host,
            cfg.port,
            ssl=self._ssl,
            process_request=self._authorize,
            compression=None,
            max_size=max_message_bytes(),
            max_queue=64,
            open_timeout=cfg.hello_timeout_s,
            server_header="micwire",
        ) as server:
            self.port = int(server.sockets[0].getsockname()[1])
            shown = cfg.host or "0.0.0.0"
            scheme = "wss" if self._ssl else "ws"
            log.info(
                "listening on %s://%s:%d%s",
                scheme,
                shown,
                self.port,
                " (token required)" if cfg.token else "",
            )
            if ready is not None:
                ready(self.port)
            stats = asyncio.create_task(self._report_stats(stop))
            await stop.wait()
            self._stopping = True
            await stats
            log.info("stopping: closing %d stream(s)", len(self.sessions))
        # leaving `serve` closed every connection (1001) and waited for their handlers
        for session in list(self.parked.values()):
            await self._finish(session)

    def _authorize(self, ws: ServerConnection, request: Request) -> Response | None:
        """Answer HTTP 401 before the WebSocket upgrade unless the token matches."""
        token = self.config.token
        if token is None:
            return None
        offered = request.headers.get("Authorization", "")
        if hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            return None
        log.warning("refused %s: missing or wrong token", ws.remote_address[0])
        response = ws.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="micwire"'
        return response

    async def _report_stats(self, stop: asyncio.Event) -> None:
        """Every interval: the live figures of every stream, as JSON lines to
        ``--stats-json`` and to the ``on_stats`` callback (the terminal display)."""
        path, show = self.config.stats_json, self.config.on_stats
        if path is None and show is None:
            return
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(path, "a", buffering=1)) if path else None
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.stats_interval_s)
                lines = [session.stats() for session in list(self.sessions)]
                if out is not None:
                    out.writelines(json.dumps(line) + "\n" for line in lines)
                if show is not None:
                    show(lines)

    async def _handle(self, ws: ServerConnection) -> None:
        host, port = ws.remote_address[:2]
        peer = f"{host}:{port}"
        session = await self._open_session(ws, peer)
        if session is None:
            return
        self.sessions.add(session)
        report = session.report
        try:
            async for message in ws:
                await session.on_packet(Packet.parse(message))
                if session.depacketizer.ended:
                    report.outcome = "complete"
                    break
            else:
                code = ws.close_code
                report.outcome = (
                    "sender closed without end-of-stream"
                    if code == 1000
                    else (f"connection closed ({code})")
                )
        except ConnectionClosed as exc:
            report.outcome = f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except ProtocolError as exc:
            report.outcome = f"closed: {exc}"
            await ws.close(CLOSE_PROTOCOL_ERROR, close_reason(str(exc)))
        except (MicwireError, OSError) as exc:
            report.outcome = f"receiver error: {exc}"
            log.error("stream %r: %s", session.name, exc)
            await ws.close(CLOSE_INTERNAL_ERROR, close_reason(str(exc)))
        finally:
            self.sessions.discard(session)
            lost = report.outcome.startswith("connection lost")
            if lost and session.stream_id and not self._stopping:
                self._park(session)
            else:
                await self._finish(session)
            session.detached.set()

    def _park(self, session: Session) -> None:
        """Keep a broken stream's recording open for its sender to reconnect."""
        session.ws = None
        self.parked[session.stream_id] = session
        grace = self.config.resume_grace_s
        log.warning(
            "stream %r: %s; keeping it open %g s for the sender to come back",
            session.name,
            session.report.outcome,
            grace,
        )

        async def expire() -> None:
            await asyncio.sleep(grace)
            if self.parked.get(session.stream_id) is session:
                await self._finish(session)

        session.expiry = asyncio.create_task(expire())

    async def _finish(self, session: Session) -> None:
        """Finalise a stream for good: files, sidecar, report."""
        if self.parked.get(session.stream_id) is session:
            del self.parked[session.stream_id]
        if session.expiry is not None and session.expiry is not asyncio.current_task():
            session.expiry.cancel()
        try:
            await session.close()
        except Exception as exc:
            log.error("stream %r: could not finalise: %s", session.name, exc)
        self.reports.append(session.report)
        log.info("%s", session.report.summary())

    async def _open_session(self, ws: ServerConnection, peer: str) -> Session | None:
        """Read and check the hello; answer it; return the session or None if refused."""
        cfg = self.config
        try:
            text = await asyncio.wait_for(ws.recv(), cfg.hello_timeout_s)
            hello = Hello.parse(text)
            if len(self.sessions) >= cfg.max_streams:
                raise ProtocolError(f"receiver is full ({cfg.max_streams} streams)")
            await self._replace_same_name(sanitize_stream_name(hello.stream), peer)
            session, resume_seq, resume_timestamp = await self._resume_or_start(hello, peer, ws)
        except asyncio.TimeoutError:
            await self._refuse(ws, peer, f"no hello within {cfg.hello_timeout_s:g} s")
            return None
        except ConnectionClosed:
            return None
        except MicwireError as exc:
            await self._refuse(ws, peer, str(exc))
            return None
        try:
            recording = session.recording.paths[0].name if session.recording else None
            accept = Accept(
                session.name, recording, resume_seq=resume_seq, resume_timestamp=resume_timestamp
            )
            await ws.send(accept.serialize())
        except ConnectionClosed:
            if resume_seq is not None:
                self._park(session)  # still waiting for its sender
            else:
                await session.close()
            return None
        p = hello.params
        log.info(
            "stream %r from %s: %s, %d Hz, %d ch, %g ms frames%s",
            session.name,
            peer,
            p.codec,
            p.rate_hz,
            p.channels,
            p.frame_ms,
            f" -> {', '.join(str(x) for x in session.report.paths)}" if session.recording else "",
        )
        return session

    async def _resume_or_start(
        self, hello: Hello, peer: str, ws: ServerConnection
    ) -> tuple[Session, int | None, int | None]:
        """A sender coming back (same stream_id, same parameters) continues its parked
        stream: same recording, and it resends from the packet we lack. Otherwise a new
        stream; one that says it is resuming but is unknown here (a restarted receiver)
        starts its timeline at its first packet, in a new file."""
        parked = self.parked.pop(hello.stream_id, None) if hello.stream_id else None
        if parked is not None and parked.params == hello.params:
            if parked.expiry is not None:
                parked.expiry.cancel()
            parked.ws, parked.peer = ws, peer
            parked.report.reconnects += 1
            parked.report.outcome = "open"
            parked.detached = asyncio.Event()
            log.info(
                "stream %r: %s is back; resuming from packet %d",
                parked.name,
                peer,
                parked.depacketizer.next_seq,
            )
            return parked, parked.depacketizer.next_seq, None
        if parked is not None:
            await self._finish(parked)
        previous = self._previous_part(hello)
        if previous is not None:
            log.info(
                "stream %r: continuing %s from sample %d in a new part",
                hello.stream,
                previous[0].name,
                previous[1],
            )
            return Session(self, hello, peer, ws, previous=previous), None, previous[1]
        return Session(self, hello, peer, ws, None if hello.resuming else 0), None, None

    def _previous_part(self, hello: Hello) -> tuple[Path, int] | None:
        """After a restart: this stream's latest sidecar in the record directory, and the
        timeline position its recording reaches (the WAV header is kept current, so the
        file itself says exactly how far it got)."""
        directory = self.config.record_dir
        if directory is None or not hello.stream_id or not hello.resuming:
            return None
        if hello.params.codec != "pcm":
            # a fresh Opus decoder fed mid-stream packets makes loud artefacts for many
            # frames (measured), so Opus resumes in a fresh part instead (see README)
            return None
        found: list[tuple[float, Path, dict[str, Any]]] = []
        for path in directory.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            p = hello.params
            same = (
                data.get("stream_id"),
                data.get("codec"),
                data.get("rate_hz"),
                data.get("channels"),
            ) == (hello.stream_id, p.codec, p.rate_hz, p.channels)
            if same and isinstance(data, dict):
                found.append((path.stat().st_mtime, path, data))
        if not found:
            return None
        _, path, data = max(found, key=lambda item: item[0])
        samples = int(data.get("samples", 0))
        wav = [name for name in data.get("files", []) if str(name).endswith(".wav")]
        if wav:
            with contextlib.suppress(RuntimeError, OSError):
                samples = int(sf.info(str(directory / wav[0])).frames)
        return path, int(data.get("origin", 0)) + samples

    async def _replace_same_name(self, name: str, peer: str) -> None:
        """One live connection per stream name: a newer one replaces the older (a sender that
        reconnects after a network failure must not wait for the dead link to time out)."""
        for old in [s for s in self.sessions if s.name == name]:
            log.warning("stream %r: %s replaces the connection from %s", name, peer, old.peer)
            if old.ws is not None:
                await old.ws.close(
                    CLOSE_REFUSED,
                    close_reason(f"replaced by a newer connection for stream {name!r}"),
                )
            with contextlib.suppress(asyncio.TimeoutError):  # let it park or finish first
                await asyncio.wait_for(old.detached.wait(), 5.0)

    async def _refuse(self, ws: ServerConnection, peer: str, reason: str) -> None:
        log.warning("refused %s: %s", peer, reason)
        try:
            await ws.send(Refuse(reason).serialize())
        except ConnectionClosed:
            return
        await ws.close(CLOSE_REFUSED, close_reason(reason))
