"""One connection, from hello to close: the receiver's per-connection protocol.

Whatever happens on a connection ends in a close code with a reason and a log line: a bad
hello (1008), a refusal for now (1013: full, name in use), a malformed packet (1002), a
connection that sends no audio for too long (1013), a recording that cannot be written
(1011, "no space left on device ..."), or an unexpected error (1011, logged with its
traceback). Nothing a connection does takes down the receiver or another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from micwire.common.errors import MicwireError, ProtocolError, StorageError
from micwire.common.protocol import (
    CLOSE_INTERNAL_ERROR,
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
from micwire.receiver.streams import Attachment, Refusal, Stream

if TYPE_CHECKING:
    from micwire.receiver.server import Receiver

log = logging.getLogger("micwire.receiver")
ACK_INTERVAL_S = 1.0


class Session:
    """A connected sender."""

    def __init__(self, receiver: Receiver, ws: ServerConnection) -> None:
        self.receiver = receiver
        self.config = receiver.config
        self.ws = ws
        host, port = ws.remote_address[:2]
        self.peer = f"{host}:{port}"
        self.attachment = Attachment(self._abort)
        self.stream: Stream | None = None
        self.last_packet = time.monotonic()
        self.idle = False

    def _abort(self) -> None:
        self.ws.transport.abort()

    async def run(self) -> None:
        hello = await self._hello()
        if hello is None:
            return
        try:
            accept = await self.receiver.streams.admit(hello, self.peer, self.attachment)
        except Refusal as refusal:
            await self._refuse(refusal.reason, refusal.retry)
            return
        self.stream = stream = self.receiver.streams.live[hello.stream]
        outcome, lost = "connection lost (no close frame)", True
        watchdog = asyncio.create_task(self._watch(stream, hello.version >= 2))
        try:
            await self.ws.send(accept.serialize())
            self._log_start(stream, hello)
            outcome, lost = await self._receive(stream, hello.version >= 2)
        except ConnectionClosed as exc:
            outcome = f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            watchdog.cancel()
            await self.receiver.streams.release(stream, self.attachment, outcome, lost)

    async def _hello(self) -> Hello | None:
        """Read and check the hello; refuse a bad or missing one (1008)."""
        timeout = self.config.hello_timeout_s
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
            return Hello.parse(text)
        except asyncio.TimeoutError:
            await self._refuse(f"no hello within {timeout:g} s")
        except ConnectionClosed:
            pass
        except MicwireError as exc:
            await self._refuse(str(exc))
        return None

    async def _receive(self, stream: Stream, acks: bool) -> tuple[str, bool]:
        """Packets until the end of the stream or the connection; (outcome, link lost)."""
        ws = self.ws
        try:
            async for message in ws:
                self.last_packet = time.monotonic()
                await stream.on_packet(Packet.parse(message))
                assert self.attachment.depacketizer is not None
                if self.attachment.depacketizer.ended:
                    return await self._complete(stream, acks), False
        except ConnectionClosed as exc:
            if self.idle:
                return f"no audio for {self.config.idle_timeout_s:g} s", True
            return f"connection lost ({exc.rcvd.code if exc.rcvd else 'no close frame'})", True
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
        except Exception as exc:  # a bug: say so, keep serving everyone else
            log.exception("stream %r: unexpected error", stream.name)
            await self._close(CLOSE_INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
            return f"internal error: {type(exc).__name__}: {exc}", False
        if self.idle:
            return f"no audio for {self.config.idle_timeout_s:g} s", True
        code = ws.close_code
        if code == 1000:
            return "sender closed without end-of-stream", True
        return f"connection closed ({code})", True

    async def _complete(self, stream: Stream, acks: bool) -> str:
        """The sender's last packet: finalise the recording, confirm, close."""
        await self.receiver.streams.finish(stream, "complete")
        if stream.outcome != "complete":  # finalising failed
            await self._close(CLOSE_INTERNAL_ERROR, stream.outcome)
            return stream.outcome
        if acks:
            stats = stream.stats()
            with contextlib.suppress(ConnectionClosed):
                recording = stream.paths[0] if stream.paths else None
                done = Done(stream.position, stats.gap_samples, recording)
                await self.ws.send(done.serialize())
        await self._close(1000, "complete")
        return "complete"

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
            if acks and self.ws.transport.get_write_buffer_size() < 4096:
                recorded = stream.recording.end if stream.recording is not None else None
                ack = Ack(recorded if recorded is not None else stream.position)
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(ack.serialize())

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close(code, close_reason(reason))

    async def _refuse(self, reason: str, retry: bool = False) -> None:
        self.receiver.note_refusal(self.peer, reason)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(Refuse(reason, retry).serialize())
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
