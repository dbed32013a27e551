"""One sender's connection, from hello to close: the asyncio shell around its protocol.

What is decided on a connection is decided in micwire.common.connection.receiver (events
in, actions out); this shell moves messages and time, and carries the actions out against
the receiver's streams (micwire.receiver.registry) and the WebSocket. Whatever happens ends
in a close code with a reason and a log line: a bad hello (1008), a refusal for now (1013:
full, name in use), a malformed packet (1002), a connection that sends no audio for too
long (1013), a message too big (1009), a recording that cannot be written (1011, "no space
left on device ..."), or an unexpected error (1011, logged with its traceback). Nothing a
connection does takes down the receiver or another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..common import outcome as outcomes
from ..common.connection.receiver import (
    Action,
    Admit,
    Clock,
    Close,
    Deliver,
    Finish,
    Limits,
    Phase,
    ReceiverConnection,
    Release,
    Send,
)
from ..common.errors import FrameError, MicwireError, ProtocolError, StorageError
from ..common.protocol import CLOSE_REFUSED, CLOSE_TRY_AGAIN, Done, Hello, close_reason
from .config import netloc
from .registry import Refusal
from .stream import Attachment, Stream

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")
ACK_INTERVAL_S = 1.0
#: What ends the read loop: the peer's close frame, the connection gone, an error.
_ENDS = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class Connection:
    """A connected sender."""

    def __init__(self, receiver: Receiver, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.receiver = receiver
        self.ws = ws
        self.transport: Any = request.transport
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peer = netloc(peer[0], peer[1]) if peer else "unknown"
        self.attachment = Attachment(self._abort)
        self.stream: Stream | None = None
        cfg = receiver.config
        limits = Limits(
            hello_timeout_s=cfg.hello_timeout_s,
            idle_timeout_s=cfg.idle_timeout_s,
            ack_interval_s=min(ACK_INTERVAL_S, cfg.idle_timeout_s / 4),
        )
        self.protocol = ReceiverConnection(time.monotonic(), limits)
        self._released = False

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def run(self) -> None:
        ticks = asyncio.create_task(self._ticks())
        try:
            while self.protocol.phase is not Phase.DONE:
                message = await self.ws.receive()
                actions = self._event(message)
                if actions:
                    await self._perform(actions)
                if message.type in _ENDS:
                    break
        except (ConnectionError, RuntimeError):
            await self._perform(self.protocol.connection_closed(None))  # gone as we answered
        finally:
            ticks.cancel()
            # the stream lets go of this connection (after its end too: a takeover waits
            # for that); cancelled while the receiver stops, the link is taken for lost
            ended = self.protocol.outcome
            if ended is None:
                await self._release(outcomes.lost("connection lost (no close frame)"), True)
            else:
                await self._release(ended, False)

    def _event(self, message: Any) -> list[Action]:
        now = time.monotonic()
        if message.type is WSMsgType.BINARY:
            self.receiver.monitor.received_bytes += len(message.data)
            return self.protocol.receive_binary(message.data, now)
        if message.type is WSMsgType.TEXT:
            return self.protocol.receive_text(message.data, now, time.time())
        if message.type is WSMsgType.CLOSE:
            return self.protocol.connection_closed(int(message.data))
        if message.type is WSMsgType.ERROR and getattr(message.data, "code", None) == 1009:
            # aiohttp closed it already (1009, no reason): a sender's fault, not a lost link
            why = f"a message too large for any packet ({message.data}; closed with 1009)"
            return self.protocol.fault(FrameError(why))
        return self.protocol.connection_closed(None, self.ws.close_code)

    async def _ticks(self) -> None:
        """Time for the protocol: the hello's deadline, then once per ack interval (an
        acknowledgement of what is recorded; a connection that sends no audio is closed)."""
        limits = self.protocol.limits
        every = min(limits.ack_interval_s, limits.hello_timeout_s)
        while self.protocol.phase is not Phase.DONE:
            stream = self.stream
            recorded = 0
            if stream is not None:
                stream.playout.report_errors()
                stream.recording.refresh()
                end = stream.recording.end
                recorded = end if end is not None else stream.position
            buffered = self.transport.get_write_buffer_size() if self.transport else 0
            actions = self.protocol.tick(time.monotonic(), recorded, buffered, time.time())
            for action in actions:
                if isinstance(action, Close) and action.code == CLOSE_TRY_AGAIN and stream:
                    log.warning("stream %r: %s; closing", stream.name, action.reason)
            await self._perform(actions)
            await asyncio.sleep(every)

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is Deliver:  # once a packet: first, and no coroutine for nothing
                more = await self._deliver(action)
                if more:
                    await self._perform(more)
            elif isinstance(action, Send):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.send_str(action.text)
            elif isinstance(action, Close):
                if self.stream is None and action.code in (CLOSE_REFUSED, CLOSE_TRY_AGAIN):
                    self.receiver.monitor.note_refusal(self.peer, action.reason)
                with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                    await self.ws.close(
                        code=action.code, message=close_reason(action.reason).encode()
                    )
            elif isinstance(action, Admit):
                await self._perform(await self._admit(action.hello))
            elif isinstance(action, Finish):
                await self._perform(await self._finish(action))
            elif isinstance(action, Release):
                await self._release(action.outcome, action.lost)
            elif isinstance(action, Clock) and self.stream is not None:
                self.stream.clock.add(action.exchange)

    async def _admit(self, hello: Hello) -> list[Action]:
        try:
            accept = await self.receiver.streams.admit(hello, self.peer, self.attachment)
        except Refusal as refusal:
            return self.protocol.refused(refusal.reason, refusal.retry, refusal.retry_after_s)
        self.stream = self.receiver.streams.live[hello.stream]
        self._log_start(self.stream, hello)
        return self.protocol.admitted(accept, time.monotonic())

    async def _deliver(self, action: Deliver) -> list[Action]:
        stream = self.stream
        assert stream is not None
        try:
            ended = await stream.on_packet(action.packet)
        except ProtocolError as exc:
            return self.protocol.fault(exc)
        except StorageError as exc:
            log.error("stream %r: %s", stream.name, exc)
            return self.protocol.failed(outcomes.failed(str(exc)))
        except MicwireError as exc:
            log.error("stream %r: %s", stream.name, exc)
            return self.protocol.failed(outcomes.error(f"receiver error: {exc}"), str(exc))
        except (ConnectionError, RuntimeError) as exc:
            if self.ws.closed or self.transport is None or self.transport.is_closing():
                return self.protocol.connection_closed(None)
            return self._bug(stream, exc)
        except Exception as exc:  # a bug: say so, keep serving everyone else
            return self._bug(stream, exc)
        return self.protocol.delivered(ended)

    def _bug(self, stream: Stream, exc: Exception) -> list[Action]:
        log.exception("stream %r: unexpected error", stream.name, exc_info=exc)
        result = outcomes.error(f"internal error: {type(exc).__name__}: {exc}")
        return self.protocol.failed(result, f"internal error: {type(exc).__name__}")

    async def _finish(self, action: Finish) -> list[Action]:
        """The sender's last packet: finalise the recording, then confirm it."""
        stream = self.stream
        assert stream is not None
        await self.receiver.streams.finish(stream, action.outcome)
        result = stream.outcome
        # finalising failed, unless the stream had ended complete before (it stays so)
        if result != action.outcome and result.ending is not outcomes.Ending.COMPLETE:
            return self.protocol.finished(result, None)
        done = Done(stream.position, stream.stats().gap_samples, stream.recording.name)
        return self.protocol.finished(result, done)

    async def _release(self, outcome: outcomes.Outcome, lost: bool) -> None:
        if self.stream is None or self._released:
            return
        self._released = True
        await self.receiver.streams.release(self.stream, self.attachment, outcome, lost)

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
