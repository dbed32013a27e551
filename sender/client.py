"""The sender: source -> framer -> encoder -> bounded packet queue -> WebSocket.

Two tasks share a :class:`~micwire.sender.sources.DropOldestQueue` of packets: the capture
task never waits for the network, the send task never waits for the sound card. If the
network stalls longer than the queue holds (``queue_s``), the oldest packets are dropped,
counted and reported; the receiver sees the gap in the timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from micwire.common.codecs import make_encoder
from micwire.common.errors import ParameterError, ProtocolError, RefusedError, TransportError
from micwire.common.framing import Framer, Packetizer
from micwire.common.protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    CLOSE_TOO_BIG,
    Accept,
    Hello,
    Packet,
    Refuse,
    StreamParams,
    parse_reply,
)
from micwire.sender.sources import DropOldestQueue, Source, open_source

log = logging.getLogger("micwire.sender")
SOFTWARE = "micwire/0.1.0"


@dataclass
class SenderConfig:
    url: str
    name: str = field(default_factory=socket.gethostname)
    source: str | None = None  # "tone:HZ", "file:PATH", or None for a PortAudio device
    device: str | None = None
    codec: str = "pcm"
    rate_hz: int = 48000
    channels: int = 1
    frame_ms: float = 20.0
    bitrate: int = 32000
    application: str = "audio"
    fec: bool = False
    expected_loss_pct: int = 10
    duration_s: float | None = None
    #: Seconds of audio kept for resending after a reconnect, and queued while the link is
    #: down; beyond that the oldest is dropped (and recorded as silence).
    spool_s: float = 120.0
    #: Reconnect after a network failure (the receiver resumes the same recording).
    reconnect: bool = True
    reconnect_timeout_s: float = 120.0
    #: Once stopped, how long to keep trying to deliver what is left.
    finish_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    #: Shared secret for a receiver started with --token (sent as a Bearer token).
    token: str | None = None
    #: CA bundle to trust for wss:// (default: the system's trust store).
    cafile: Path | None = None
    #: Scales the pacing clock of tone/file sources (tests of clock drift).
    clock_scale: float = 1.0

    def params(self) -> StreamParams:
        return StreamParams(
            self.codec, self.rate_hz, self.channels, self.frame_ms, self.bitrate
        ).check()


@dataclass
class SenderReport:
    stream: str = ""
    recording: str | None = None
    packets_sent: int = 0
    samples_captured: int = 0
    dropped_samples: int = 0  # lost before encoding (capture queue full)
    dropped_packets: int = 0  # lost before sending (link down longer than spool_s)
    reconnects: int = 0
    resent_packets: int = 0
    input_overflows: int = 0
    rate_hz: int = 0

    @property
    def seconds(self) -> float:
        return self.samples_captured / self.rate_hz if self.rate_hz else 0.0

    def summary(self) -> str:
        text = (
            f"sent {self.packets_sent} packets, {self.seconds:.2f} s of audio "
            f"({self.samples_captured} samples)"
        )
        if self.dropped_samples or self.dropped_packets:
            text += (
                f"; LOST {self.dropped_samples} samples before encoding and "
                f"{self.dropped_packets} packets before sending (recorded as silence)"
            )
        else:
            text += ", nothing lost"
        if self.reconnects:
            text += f"; {self.reconnects} reconnects, {self.resent_packets} packets resent"
        if self.input_overflows:  # the OS/driver lost input before PortAudio handed it over
            text += f"; the input device reported {self.input_overflows} overflow(s)"
        return text


class Sender:
    def __init__(self, config: SenderConfig, source: Source | None = None) -> None:
        self.config = config
        self.params = config.params()
        if config.duration_s is not None and not config.duration_s > 0:
            raise ParameterError(f"--duration must be positive, got {config.duration_s:g}")
        # fail fast, before connecting: codec library, device, file
        self.encoder = make_encoder(
            self.params, config.application, config.fec, config.expected_loss_pct
        )
        self.params = StreamParams(**{**self.params.__dict__, "pre_skip": self.encoder.pre_skip})
        frame = self.params.frame_samples
        self.source = source or open_source(
            config.source,
            config.device,
            config.rate_hz,
            config.channels,
            frame,
            config.clock_scale,
        )
        self.report = SenderReport(rate_hz=config.rate_hz)
        spool_packets = max(8, math.ceil(config.spool_s * 1000 / config.frame_ms))
        #: captured, not yet sent (grows while the link is down; oldest dropped past spool_s)
        self._packets: DropOldestQueue[Packet] = DropOldestQueue(spool_packets)
        #: sent, kept for resending after a reconnect
        self._spool: deque[Packet] = deque(maxlen=spool_packets)
        self.stream_id = uuid.uuid4().hex
        self._start_us = 0

    def stop(self) -> None:
        """Finish the stream: the partial frame is sent, then the connection is closed."""
        self.source.stop()

    async def run(self) -> SenderReport:
        """Stream until the source ends or :meth:`stop`; reconnect through network failures."""
        ws = await self._connect()
        try:
            resume = await self._handshake(ws, resuming=False)
            capture = asyncio.create_task(self._capture())
            try:
                while True:
                    try:
                        await self._send(ws, resume)
                        break
                    except ConnectionClosed as exc:
                        if not self._may_reconnect(exc):
                            raise TransportError(_closed_message(exc)) from exc
                        log.warning("%s; reconnecting (still capturing)", _closed_message(exc))
                        ws, resume = await self._reconnect(ws)
            finally:
                self.source.stop()
                await asyncio.wait([capture])
            capture.result()
        finally:
            await ws.close()
        self.report.dropped_packets = self._packets.dropped_count
        self.report.dropped_samples = self.source.dropped_samples
        self.report.input_overflows = self.source.input_overflows
        return self.report

    def _connect_options(self) -> dict[str, Any]:
        url = self.config.url
        options: dict[str, Any] = {
            "additional_headers": (
                {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
            ),
            # audio does not compress; small write buffers add no latency
            "compression": None,
            "max_size": 2**16,
            "write_limit": 2**15,
            "open_timeout": self.config.connect_timeout_s,
            "user_agent_header": SOFTWARE,
            "proxy": None,
        }
        if self.config.cafile is not None:  # otherwise the system trust store, for wss://
            if not url.startswith("wss://"):
                raise ParameterError("--cafile is for wss:// URLs")
            try:
                options["ssl"] = ssl.create_default_context(cafile=str(self.config.cafile))
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load --cafile {self.config.cafile}: {exc}") from exc
        return options

    async def _connect(self) -> ClientConnection:
        """Open a connection, turning every failure into one actionable TransportError."""
        url = self.config.url
        try:
            return await connect(url, **self._connect_options())
        except InvalidURI as exc:
            raise ParameterError(
                f"bad receiver URL {url!r}: use ws://HOST:PORT or wss://HOST:PORT"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"the receiver at {url} has a TLS certificate this machine does not trust "
                f"({exc.verify_message}); pass its CA with --cafile"
            ) from exc
        except InvalidStatus as exc:
            if exc.response.status_code == HTTPStatus.UNAUTHORIZED:
                raise TransportError(
                    f"the receiver at {url} wants a valid token (HTTP 401): "
                    "pass --token or set MICWIRE_TOKEN"
                ) from exc
            raise TransportError(f"the receiver at {url} rejected the connection: {exc}") from exc
        except (OSError, asyncio.TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or "no answer"
            raise TransportError(
                f"cannot reach the receiver at {url} ({why}); is `micwire receive` running there?"
            ) from exc
        except InvalidHandshake as exc:
            raise TransportError(f"the receiver at {url} rejected the connection: {exc}") from exc

    def _may_reconnect(self, exc: ConnectionClosed) -> bool:
        """Reconnect after a network failure or a receiver restart; not after the receiver
        refused or replaced us, or closed us for a protocol error (retrying cannot help)."""
        code = exc.rcvd.code if exc.rcvd else None
        return self.config.reconnect and code not in (
            CLOSE_PROTOCOL_ERROR,
            CLOSE_REFUSED,
            CLOSE_TOO_BIG,
        )

    async def _reconnect(self, old: ClientConnection) -> tuple[ClientConnection, Accept]:
        """Exponential back-off with jitter, from 0.1 s up to 2 s between attempts (audio
        cannot wait for the seconds a web client's back-off starts at). Gives up after
        ``reconnect_timeout_s``, or ``finish_timeout_s`` once the stream has been stopped."""
        await old.close()
        started = time.monotonic()
        delay = 0.1
        while True:
            limit = (
                self.config.finish_timeout_s
                if self.source.stopping
                else self.config.reconnect_timeout_s
            )
            if time.monotonic() - started > limit:
                undelivered = len(self._packets) * self.config.frame_ms / 1000
                raise TransportError(
                    f"lost the receiver at {self.config.url} and could not reconnect within "
                    f"{limit:g} s; {undelivered:.1f} s of audio were not delivered"
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(2.0, delay * 2)
            try:
                ws = await self._connect()
                resume = await self._handshake(ws, resuming=True)
            except (TransportError, ConnectionClosed) as exc:
                if isinstance(exc, RefusedError):
                    raise
                continue
            self.report.reconnects += 1
            log.info("reconnected to %s", self.config.url)
            return ws, resume

    async def _handshake(self, ws: ClientConnection, resuming: bool) -> Accept:
        """Send the hello; return the receiver's answer (it says what to resend, if any)."""
        now_us = int(time.time() * 1e6)
        hello = Hello(
            self.config.name,
            self.params,
            self._start_us or now_us,
            now_us,
            SOFTWARE,
            stream_id=self.stream_id,
            resuming=resuming,
        )
        self._start_us = hello.start_time_us
        try:
            await ws.send(hello.serialize())
            text = await asyncio.wait_for(ws.recv(), self.config.connect_timeout_s)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == CLOSE_REFUSED:
                raise RefusedError(exc.rcvd.reason or "no reason given") from exc
            raise TransportError(_closed_message(exc)) from exc
        except asyncio.TimeoutError as exc:
            raise TransportError("the receiver did not answer the hello") from exc
        try:
            reply = parse_reply(text)
        except ProtocolError as exc:
            raise TransportError(f"the receiver sent a bad reply: {exc}") from exc
        if isinstance(reply, Refuse):
            raise RefusedError(reply.reason)
        self.report.stream, self.report.recording = reply.stream, reply.recording
        return reply

    async def _capture(self) -> None:
        """Source -> framer -> packets, into the pending queue; independent of the link."""
        try:
            await self._capture_blocks()
        finally:
            self._packets.close()

    async def _capture_blocks(self) -> None:
        cfg = self.config
        # Opus frames must be whole and back to back; PCM leaves with each capture block
        pcm = cfg.codec == "pcm"
        framer = Framer(
            self.params.frame_samples, cfg.channels, cfg.rate_hz, fill_gaps=not pcm, partial=pcm
        )
        packetizer = Packetizer(self.encoder)
        limit = round(cfg.duration_s * cfg.rate_hz) if cfg.duration_s else None
        last_time = time.time()
        async with contextlib.aclosing(self.source.blocks()) as blocks:
            async for block in blocks:
                if block.position == 0:  # logged once audio really flows
                    log.info(
                        "sending %r from %s to %s (%s, %d Hz, %d ch, %g ms frames)",
                        cfg.name,
                        self.source.description,
                        cfg.url,
                        cfg.codec,
                        cfg.rate_hz,
                        cfg.channels,
                        cfg.frame_ms,
                    )
                if limit is not None and block.end >= limit:
                    block = type(block)(
                        block.position, block.samples[: limit - block.position], block.capture_time
                    )
                self.report.samples_captured = block.end
                last_time = block.capture_time + len(block.samples) / cfg.rate_hz
                for chunk in framer.push(block):
                    for packet in packetizer.packets(chunk):
                        self._packets.put_nowait(packet)
                if limit is not None and block.end >= limit:
                    break
        tail = framer.flush()
        if tail is not None:
            for packet in packetizer.packets(tail):
                self._packets.put_nowait(packet)
        for packet in packetizer.finish(last_time):
            self._packets.put_nowait(packet)

    async def _send(self, ws: ClientConnection, accept: Accept) -> None:
        """Resend what the receiver lacks from the spool, then send as packets come; close
        the connection after the last one. A broken link raises ConnectionClosed."""
        for packet in self._backlog(accept):
            await ws.send(packet.serialize())
            self.report.resent_packets += 1
        while (packet := await self._packets.get()) is not None:
            self._spool.append(packet)  # kept until it is old: the link may drop it unseen
            await ws.send(packet.serialize())
            self.report.packets_sent += 1
        await ws.close()

    def _backlog(self, accept: Accept) -> list[Packet]:
        """Spooled packets the receiver lacks: from a sequence number (it kept the stream
        open), or every packet reaching past a timeline position (it was restarted and has
        the recording up to there). The receiver trims any overlap."""
        if accept.resume_seq is not None:
            first = accept.resume_seq
            return [p for p in self._spool if (p.seq - first) % 2**32 < 2**31]
        if accept.resume_timestamp is not None:
            # a packet's decoded audio ends at its timestamp + frame - pre_skip
            reach = self.params.frame_samples - self.params.pre_skip
            return [p for p in self._spool if p.timestamp + reach > accept.resume_timestamp]
        return []


def _closed_message(exc: ConnectionClosed) -> str:
    reason = f": {exc.rcvd.reason}" if exc.rcvd and exc.rcvd.reason else ""
    return f"the receiver closed the connection{reason}"
