"""One connection's audio: from the spool, framed and encoded, onto the link.

:meth:`Feed.pump` runs where audio arrives (the capture's hand-off, on the event loop), so
a frame is captured, encoded and written to the socket in one event-loop turn: no task
wakes up for it. What the link cannot take at once (its write buffer is full, a resend
after a reconnect) waits in ``backlog`` for the connection's task, which sends it with
flow control; meanwhile the pump leaves the spool alone, so a slow link backs up into
the spool (bounded, the oldest dropped and counted): the backlog holds at most one spool
block's packets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..common.framing import Framer, Packetizer
from ..common.spool import Spool
from .config import SenderReport
from .link import Link


class Feed:
    def __init__(
        self,
        spool: Spool,
        link: Link,
        framer: Framer,
        packetizer: Packetizer,
        cursor: int,
        report: SenderReport,
        attention: asyncio.Event,
        first: Callable[[], None],
        lost: Callable[[int, int], None],
    ) -> None:
        self.spool = spool
        self.link = link
        self.framer = framer
        self.packetizer = packetizer
        #: Timeline position up to which the spool has been read.
        self.cursor = cursor
        self._grid = cursor  # frames start here, and every frame_samples on from it
        self.report = report
        #: Encoded packets waiting for the link, oldest first.
        self.backlog: deque[bytes] = deque()
        #: An error met by the pump, for the connection's task to raise.
        self.error: Exception | None = None
        self._attention = attention  # wakes the connection's task
        self._first = first  # called before the first packet of the stream
        self._lost = lost  # told of a span gone from the spool before it was read

    def pump(self) -> None:
        """Send what the spool holds from the cursor on, as far as the link takes it at
        once; never raises (an error is kept in ``error`` for the task)."""
        if self.backlog or self.error is not None:
            return  # the task is sending; it pumps again when the link has room
        try:
            # a bounded read at a time: catching up a long spool stays linear
            while not self.backlog:
                oldest = self.spool.start
                blocks = self.spool.read(self.cursor, self.spool.rate_hz // 4)
                if not blocks:
                    return
                if self.cursor < oldest and self.framer.fill_gaps:
                    self._skip_frames(oldest)
                    continue
                self._lost(self.cursor, oldest)  # gone before the receiver had it
                if not self.report.packets_sent:
                    self._first()
                for block in blocks:
                    if self.backlog:  # the link is full: the rest stays in the spool
                        break
                    for chunk in self.framer.push(block):
                        for packet in self.packetizer.packets(chunk):
                            self.put(packet.serialize())
                    self.cursor = block.end
        except Exception as exc:  # the task raises it (a pump runs in capture callbacks)
            self.error = exc
            self._attention.set()

    def _skip_frames(self, oldest: int) -> None:
        """Opus: the spool dropped audio this connection had not sent. Go on from the next
        whole frame, as if packets had been lost on the way (the codec runs on, the
        receiver conceals): it records the skipped frames as a gap, exactly as counted
        here. (Frames of coded silence would be recorded as audio, not as a gap.)"""
        frame = self.framer.frame_samples
        held = self.framer.restart()  # a partial frame can no longer be completed
        boundary = oldest + (self._grid - oldest) % frame
        self._lost(self.cursor if held is None else held, boundary)
        self.cursor = boundary

    def put(self, data: bytes) -> None:
        """Send a packet now if the link takes it, else queue it for the task."""
        if not self.backlog and self.link.send_now(data):
            self.report.packets_sent += 1
        else:
            self.backlog.append(data)
            self._attention.set()

    async def drain(self) -> None:
        """Send the backlog with flow control (ConnectionClosed if the link is lost)."""
        while self.backlog:
            await self.link.send(self.backlog[0])
            self.backlog.popleft()
            self.report.packets_sent += 1
