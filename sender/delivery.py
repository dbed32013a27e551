"""The asyncio shell of a stream's connection protocol: it moves bytes and time, nothing else.

:class:`Delivery` runs a :class:`~micwire.common.connection.sender.SenderProtocol`: it
performs its actions (opens connections, sends packets, closes, waits) and feeds it events
(an accept or a failed connect, each message from the receiver, a connection that ended,
the time at its deadlines, and capture's blocks through :meth:`Delivery.captured`).

Packets go out where audio arrives: :meth:`Delivery.captured` runs on the capture's
hand-off, and asks the protocol for the packets to send (:meth:`SenderProtocol.writable`)
and writes them to the socket in the same event-loop turn, so no task wakes up for a
frame. What the link cannot take at once waits in a small backlog (one spool block's
packets at most) that a task sends with flow control; meanwhile nothing more is asked
for, so a slow link backs up into the spool (bounded, its oldest dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

from websockets.exceptions import ConnectionClosed

from ..common.connection.sender import (
    Action,
    Close,
    Connect,
    Finish,
    Notice,
    Send,
    SenderProtocol,
    Wait,
)
from ..common.errors import TransportError
from ..common.framing import Block
from ..common.protocol import Ack, Done
from .config import SenderConfig
from .link import Link


class Delivery:
    def __init__(
        self,
        protocol: SenderProtocol,
        config: SenderConfig,
        tell: Callable[[Notice], None],
        before_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``tell`` words the protocol's notices for the user; ``before_connect`` runs
        before each connection is opened (ending an earlier process's stream)."""
        self.protocol = protocol
        self.config = config
        self._tell = tell
        self._before_connect = before_connect
        self._link: Link | None = None
        #: Packets the link could not take at once, oldest first (sent by ``_draining``).
        self._backlog: deque[bytes] = deque()
        self._opening: asyncio.Task[None] | None = None
        self._draining: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        #: Wakes :meth:`run`: the stream finished, an error, or a deadline sooner than
        #: the one it sleeps until (``_sleeping_until``).
        self._attention = asyncio.Event()
        self._sleeping_until: float | None = None
        self._finish: Finish | None = None
        #: An error met in a callback (an encoder failing on capture's hand-off), raised by
        #: :meth:`run`.
        self._error: BaseException | None = None

    # --- events from outside ----------------------------------------------------------
    def captured(self, block: Block) -> None:
        """A block from the capture (on the loop): into the spool, and sent at once if a
        connection is streaming."""
        self._event(lambda now: self.protocol.captured(now, block))

    def stop(self) -> None:
        """Capture is over: the rest is delivered, then the connection closes."""
        self._event(self.protocol.stop)

    async def run(self) -> Finish:
        """Until the protocol finishes the stream (confirmed, undelivered, failed)."""
        self._event(self.protocol.start)
        try:
            while self._finish is None:
                if self._error is not None:
                    raise self._error
                self._attention.clear()
                self._sleeping_until = deadline = self.protocol.deadline
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._attention.wait(), timeout)
                self._sleeping_until = None
                self._event(self.protocol.tick)
            return self._finish
        finally:
            for task in (self._opening, self._draining):
                if task is not None:
                    task.cancel()
            if self._link is not None:  # stopped from outside (cancelled, an error)
                self._closing.add(asyncio.create_task(self._link.close()))
                self._link = None
            if self._closing:
                await asyncio.wait(self._closing)

    # --- performing actions ---------------------------------------------------------------
    def _event(self, event: Callable[[float], list[Action]]) -> None:
        """Feed the protocol one event, perform what it says, then send what it has."""
        try:
            self._perform(event(time.monotonic()))
            self._pump()
        except Exception as exc:  # raised by run(): callbacks cannot raise
            self._error = exc
            self._attention.set()
        deadline, sleeping_until = self.protocol.deadline, self._sleeping_until
        if deadline is not None and (sleeping_until is None or deadline < sleeping_until):
            self._attention.set()  # sooner than run() sleeps for

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action.data)
            elif isinstance(action, Connect):
                self._opening = asyncio.create_task(self._open())
            elif isinstance(action, Close):
                self._drop(abort=action.abort)
            elif isinstance(action, Notice):
                self._tell(action)
            elif isinstance(action, Finish):
                self._finish = action
                self._attention.set()
            else:  # Wait: the protocol's deadline says when to tick
                assert isinstance(action, Wait)

    def _pump(self) -> None:
        """Send what the protocol has, as far as the link takes it now."""
        while self._link is not None and not self._backlog:
            actions = self.protocol.writable(time.time())
            if not actions:
                return
            self._perform(actions)

    def _send(self, data: bytes) -> None:
        link = self._link
        if link is None:
            return
        if not self._backlog and link.send_now(data):
            return
        self._backlog.append(data)
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(link))

    async def _drain(self, link: Link) -> None:
        """Send the backlog with flow control; a link that goes is reported by its reader
        (and its backlog dropped with it)."""
        with contextlib.suppress(ConnectionClosed):
            while self._backlog:
                await link.send(self._backlog[0])
                if link is not self._link:
                    return
                self._backlog.popleft()
                if not self._backlog:  # room again: what the protocol has (may wait here)
                    self._event(lambda _now: [])

    def _drop(self, abort: bool) -> None:
        link = self._forget_link()
        if link is None:
            return
        if abort:
            link.abort()
        else:
            self._closing.add(asyncio.create_task(link.close()))

    def _forget_link(self) -> Link | None:
        """No current connection any more; what waited to be sent on it goes with it (the
        next connection is a new codec stream, from where the receiver asks)."""
        link, self._link = self._link, None
        self._backlog.clear()
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
        return link

    # --- connections ------------------------------------------------------------------------
    async def _open(self) -> None:
        link: Link | None = None
        try:
            if self._before_connect is not None:
                await self._before_connect()
            link = await Link.open(
                self.config,
                lambda: self.protocol.hello(time.time()),
                lambda reply: self._reply(link, reply),
                lambda code, reason: self._closed(link, code, reason),
            )
        except TransportError as exc:
            failure = exc
            self._event(lambda now: self.protocol.connect_failed(now, failure))
            return
        except Exception as exc:  # a bad URL: for run() to raise
            self._error = exc
            self._attention.set()
            return
        self._link = link
        self._event(lambda now: self.protocol.connected(now, link.accept))

    def _reply(self, link: Link | None, reply: Ack | Done | None) -> None:
        if link is None or link is not self._link:
            return
        if isinstance(reply, Ack):
            self._event(lambda now: self.protocol.ack(now, reply.timestamp))
        elif isinstance(reply, Done):
            self._event(lambda now: self.protocol.done(now, reply))
        else:
            self._event(self.protocol.heard)

    def _closed(self, link: Link | None, code: int | None, reason: str) -> None:
        if link is None or link is not self._link:
            return
        self._forget_link()
        self._closing.add(asyncio.create_task(link.close()))
        self._event(lambda now: self.protocol.closed(now, code, reason))
