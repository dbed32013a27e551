"""One sender's connection, from hello to close: the receiver's per-connection protocol.

Whatever happens on a connection ends in a close code with a reason and a log line: a bad
hello (1008), a refusal for now (1013: full, name in use), a malformed packet (1002), a
connection that sends no audio for too long (1013), a message too big (1009), a recording
that cannot be written (1011, "no space left on device ..."), or an unexpected error
(1011, logged with its traceback). Nothing a connection does takes down the receiver or
another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..common.errors import FrameError, MicwireError, ProtocolError, StorageError
from ..common.protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    CLOSE_TRY_AGAIN,
    Ack,
    Done,
    Hello,
    Packet,
    Refuse,
    close_reason,
)
from .config import netloc
from .storage import SENDER_RESTARTED
from .streams import Attachment, Refusal, Stream

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")
ACK_INTERVAL_S = 1.0
CLOSE_ABNORMAL = 1006  # RFC 6455 §7.4.1: what a library reports for no close frame
#: What ends the packet loop: the peer's close frame, the connection gone, an error.
_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class ConnectionEnded(Exception):
    """The sender's connection ended without the stream's last packet."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class Session:
    """A connected sender."""

    def __init__(self, receiver: Receiver, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.receiver = receiver
        self.config = receiver.config
        self.ws = ws
        self.transport: Any = request.transport
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peer = netloc(peer[0], peer[1]) if peer else "unknown"
        self.attachment = Attachment(self._abort)
        self.stream: Stream | None = None
        self.last_packet = time.monotonic()
        self.idle = False

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def run(self) -> None:
        hello = await self._hello()
        if hello is None:
            return
        try:
            accept = await self.receiver.streams.admit(hello, self.peer, self.attachment)
        except Refusal as refusal:
            await self._refuse(refusal.reason, refusal.retry, refusal.retry_after_s)
            return
        self.stream = stream = self.receiver.streams.live[hello.stream]
        outcome, lost = "connection lost (no close frame)", True
        watchdog = asyncio.create_task(self._watch(stream, hello.version >= 2))
        try:
            await self.ws.send_str(accept.serialize())
            self._log_start(stream, hello)
            outcome, lost = await self._receive(stream, hello)
        except (ConnectionError, RuntimeError):
            pass  # the connection went while we answered
        finally:
            watchdog.cancel()
            await self.receiver.streams.release(stream, self.attachment, outcome, lost)

    async def _hello(self) -> Hello | None:
        """Read and check the hello; refuse a bad or missing one (1008)."""
        timeout = self.config.hello_timeout_s
        try:
            message = await self.ws.receive(timeout)
        except asyncio.TimeoutError:
            await self._refuse(f"no hello within {timeout:g} s")
            return None
        if message.type in _ENDS:
            return None
        try:
            return Hello.parse(message.data)
        except MicwireError as exc:
            await self._refuse(str(exc))
        return None

    async def _next_packet(self) -> Packet:
        message = await self.ws.receive()
        if message.type is WSMsgType.BINARY:
            self.receiver.received_bytes += len(message.data)
            return Packet.parse(message.data)
        if message.type is WSMsgType.TEXT:
            return Packet.parse(message.data)  # raises: a text message after the hello
        if message.type is WSMsgType.CLOSE:
            raise ConnectionEnded(int(message.data))
        if message.type is WSMsgType.ERROR and getattr(message.data, "code", None) == 1009:
            # aiohttp closed it already (1009, no reason): a sender's fault, not a lost link
            raise FrameError(
                f"a message too large for any packet ({message.data}; closed with 1009)"
            )
        raise ConnectionEnded(None)  # the connection is gone

    async def _receive(self, stream: Stream, hello: Hello) -> tuple[str, bool]:
        """Packets until the end of the stream or the connection; (outcome, link lost)."""
        acks = hello.version >= 2
        # a restarted sender ends the stream its earlier process left: not complete
        ending = SENDER_RESTARTED if hello.restarted else "complete"
        try:
            while True:
                packet = await self._next_packet()
                if packet.samples or packet.last:  # empty packets are not audio: no alibi
                    self.last_packet = time.monotonic()
                await stream.on_packet(packet)
                assert self.attachment.depacketizer is not None
                if self.attachment.depacketizer.ended:
                    return await self._complete(stream, acks, ending), False
        except ConnectionEnded as ended:
            if self.idle:
                return f"no audio for {self.config.idle_timeout_s:g} s", True
            if ended.code == CLOSE_NORMAL:
                return "sender closed without end-of-stream", True
            if ended.code is not None:
                return f"connection closed ({ended.code})", True
            code = self.ws.close_code
            if code not in (None, CLOSE_NORMAL, CLOSE_ABNORMAL):  # closed here
                return f"connection closed ({code})", True
            return "connection lost (no close frame)", True
        except ProtocolError as exc:
            await self._close(CLOSE_PROTOCOL_ERROR, str(exc))
            return f"closed: {exc}", False
        except StorageError as exc:
            log.error("stream %r: %s", stream.name, exc)
            await self._close(CLOSE_INTERNAL_ERROR, f"recording failed: {exc}")
            return f"recording failed: {exc}", False
        except MicwireError as exc:
            log.error("stream %r: %s", stream.name, exc)
            await self._close(CLOSE_INTERNAL_ERROR, str(exc))
            return f"receiver error: {exc}", False
        except (ConnectionError, RuntimeError) as exc:
            if self.ws.closed or self.transport is None or self.transport.is_closing():
                return "connection lost (no close frame)", True
            log.exception("stream %r: unexpected error", stream.name)
            await self._close(CLOSE_INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
            return f"internal error: {type(exc).__name__}: {exc}", False
        except Exception as exc:  # a bug: say so, keep serving everyone else
            log.exception("stream %r: unexpected error", stream.name)
            await self._close(CLOSE_INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
            return f"internal error: {type(exc).__name__}: {exc}", False

    async def _complete(self, stream: Stream, acks: bool, outcome: str) -> str:
        """The sender's last packet: finalise the recording, confirm, close."""
        await self.receiver.streams.finish(stream, outcome)
        # finalising failed (a stream that had ended complete stays so)
        if stream.outcome not in (outcome, "complete"):
            await self._close(CLOSE_INTERNAL_ERROR, stream.outcome)
            return stream.outcome
        if acks:
            stats = stream.stats()
            done = Done(stream.position, stats.gap_samples, stream.recording_name)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(done.serialize())
        await self._close(CLOSE_NORMAL, "complete" if stream.outcome == "complete" else "ended")
        return stream.outcome

    async def _watch(self, stream: Stream, acks: bool) -> None:
        """Once a second: acknowledge what is recorded; close a connection that has sent
        no audio for ``idle_timeout_s``."""
        idle_s = self.config.idle_timeout_s
        while True:
            await asyncio.sleep(min(ACK_INTERVAL_S, idle_s / 4))
            if time.monotonic() - self.last_packet > idle_s:
                self.idle = True
                log.warning("stream %r: no audio for %g s; closing", stream.name, idle_s)
                await self._close(CLOSE_TRY_AGAIN, f"no audio for {idle_s:g} s")
                return
            stream.report_playback_errors()
            buffered = self.transport.get_write_buffer_size() if self.transport else 0
            if acks and buffered < 4096 and not self.ws.closed:
                recorded = stream.recording.end if stream.recording is not None else None
                ack = Ack(recorded if recorded is not None else stream.position)
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.send_str(ack.serialize())

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await self.ws.close(code=code, message=close_reason(reason).encode())

    async def _refuse(
        self, reason: str, retry: bool = False, retry_after_s: float | None = None
    ) -> None:
        self.receiver.note_refusal(self.peer, reason)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(Refuse(reason, retry, retry_after_s).serialize())
        await self._close(CLOSE_TRY_AGAIN if retry else CLOSE_REFUSED, reason)

    def _log_start(self, stream: Stream, hello: Hello) -> None:
        p = hello.params
        log.info(
            "stream %r from %s: %s, %d Hz, %d ch, %g ms frames%s",
            stream.name,
            self.peer,
            p.codec,
            p.rate_hz,
            p.channels,
            p.frame_ms,
            "" if hello.version >= 2 else " (protocol 1: no acknowledgements, no resume)",
        )
