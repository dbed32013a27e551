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
import socket
import ssl
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from micwire.common.codecs import make_encoder
from micwire.common.errors import ParameterError, ProtocolError, RefusedError, TransportError
from micwire.common.framing import Framer, Packetizer
from micwire.common.protocol import (
    Hello,
    Packet,
    Refuse,
    StreamParams,
    parse_reply,
)
from micwire.sender.sources import DropOldestQueue, Source, open_source
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

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
    #: Seconds of audio the packet queue holds while the network is slow.
    queue_s: float = 10.0
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
    dropped_packets: int = 0  # lost before sending (network too slow for queue_s)
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
        queue_packets = max(8, math.ceil(config.queue_s * 1000 / config.frame_ms))
        self._packets: DropOldestQueue[Packet] = DropOldestQueue(queue_packets)

    def stop(self) -> None:
        """Finish the stream: the partial frame is sent, then the connection is closed."""
        self.source.stop()

    async def run(self) -> SenderReport:
        async with self._connect() as ws:
            await self._handshake(ws)
            sending = asyncio.create_task(self._send(ws))
            try:
                await self._capture(sending)
            finally:
                self._packets.close()
                await asyncio.wait([sending])
            sending.result()  # re-raise a broken link
            await ws.close()
        self.report.dropped_packets = self._packets.dropped_count
        self.report.dropped_samples = self.source.dropped_samples
        self.report.input_overflows = self.source.input_overflows
        return self.report

    @contextlib.asynccontextmanager
    async def _connect(self) -> Any:
        url = self.config.url
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        tls: dict[str, Any] = {}  # websockets picks the system trust store for wss://
        if self.config.cafile is not None:
            if not url.startswith("wss://"):
                raise ParameterError("--cafile is for wss:// URLs")
            try:
                tls["ssl"] = ssl.create_default_context(cafile=str(self.config.cafile))
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load --cafile {self.config.cafile}: {exc}") from exc
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                **tls,
                compression=None,
                max_size=2**16,
                write_limit=2**15,
                open_timeout=self.config.connect_timeout_s,
                user_agent_header=SOFTWARE,
                proxy=None,
            )
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
        try:
            yield ws
        finally:
            await ws.close()

    async def _handshake(self, ws: ClientConnection) -> None:
        now_us = int(time.time() * 1e6)
        hello = Hello(self.config.name, self.params, now_us, now_us, SOFTWARE)
        try:
            await ws.send(hello.serialize())
            text = await asyncio.wait_for(ws.recv(), self.config.connect_timeout_s)
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd else "no reason given"
            raise RefusedError(reason) from exc
        except asyncio.TimeoutError as exc:
            raise TransportError("the receiver did not answer the hello") from exc
        try:
            reply = parse_reply(text)
        except ProtocolError as exc:
            raise TransportError(f"the receiver sent a bad reply: {exc}") from exc
        if isinstance(reply, Refuse):
            raise RefusedError(reply.reason)
        self.report.stream, self.report.recording = reply.stream, reply.recording

    async def _capture(self, sending: asyncio.Task[None]) -> None:
        cfg = self.config
        framer = Framer(
            self.params.frame_samples, cfg.channels, cfg.rate_hz, fill_gaps=cfg.codec != "pcm"
        )
        packetizer = Packetizer(self.encoder)
        limit = round(cfg.duration_s * cfg.rate_hz) if cfg.duration_s else None
        last_time = time.time()
        async with contextlib.aclosing(self.source.blocks()) as blocks:
            async for block in blocks:
                if sending.done():  # the link broke; stop capturing
                    break
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

    async def _send(self, ws: ClientConnection) -> None:
        while (packet := await self._packets.get()) is not None:
            try:
                await ws.send(packet.serialize())
            except ConnectionClosed as exc:
                self.source.stop()
                reason = f": {exc.rcvd.reason}" if exc.rcvd and exc.rcvd.reason else ""
                raise TransportError(f"the receiver closed the connection{reason}") from exc
            self.report.packets_sent += 1
