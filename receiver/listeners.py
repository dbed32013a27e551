"""Browser listeners of a stream: fan-out with a bounded queue each (aiortc's MediaRelay).

A stream offers every packet to each of its listeners with :meth:`Listener.offer`, which
never waits: a listener's queue holds about a second of audio, and when it is full the
oldest goes (counted). Each listener has its own task that writes its queue to its
WebSocket; one that cannot keep up loses its own audio, and one that stops reading
(nothing written for ``stalled_s``) is disconnected. Its connection holds at most about
half a second of audio on the way (:func:`bound_in_flight`), so "stopped reading" is seen
at once, not once the kernel has buffered tens of seconds of it. Nothing a listener does
slows the sender, the recording, live playback or another listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ..common.assembly import segment_length
from ..common.protocol import HEADER, Packet, StreamParams
from .sinks import Delivery

log = logging.getLogger("micwire.receiver")
#: Audio a listener may have waiting, in seconds.
QUEUE_S = 1.0
#: A listener whose socket takes no data for this long is disconnected.
STALLED_S = 10.0
#: Audio the connection itself may hold on its way (asyncio's write buffer, and the
#: kernel's send buffer: each about this much). Left to itself Linux grows a send buffer to
#: 4 MB, 40 s of PCM, before a listener that stopped reading is noticed at all.
IN_FLIGHT_S = 0.25
#: Smallest buffer either is given, in bytes (Linux doubles what is asked, and has a floor).
MIN_BUFFER_BYTES = 4096


def bytes_per_s(codec: str, rate_hz: int, channels: int, frame_ms: float, bitrate: int) -> int:
    """What a listener is sent per second: payload and each packet's headers (ours, 24
    bytes, and WebSocket's, up to 10)."""
    payload = rate_hz * channels * 2 if codec == "pcm" else bitrate // 8
    return int(payload + 1000 / frame_ms * (24 + 10))


def bound_in_flight(transport: Any, per_s: int) -> int:
    """Keep what a listener's connection holds to about IN_FLIGHT_S of its audio, so one
    that stops reading shows in its own queue within a second, and is disconnected
    STALLED_S later (not after the kernel has taken tens of seconds of it). Returns the
    bound in bytes, for the WebSocket writer's own (it checks for room only that often)."""
    limit = max(MIN_BUFFER_BYTES, int(per_s * IN_FLIGHT_S))
    if transport is None:
        return limit
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)
    with contextlib.suppress(AttributeError, ValueError):
        transport.set_write_buffer_limits(high=limit)
    return limit


class Listener:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        stream: str,
        pcm: bool,
        rate_hz: int,
        stalled_s: float = STALLED_S,
    ) -> None:
        self.ws = ws
        self.stream = stream
        #: Wants decoded PCM whatever the stream's codec (a browser without Opus).
        self.pcm = pcm
        self.stalled_s = stalled_s
        self._capacity = int(QUEUE_S * rate_hz)
        self._queue: deque[tuple[bytes | str, int]] = deque()  # (message, samples)
        self._queued = 0
        self._ready = asyncio.Event()
        self.dropped_packets = 0
        self.sent_bytes = 0
        self.closed = False
        self._last_progress = time.monotonic()

    def offer(self, message: bytes | str, samples: int = 0) -> None:
        """Queue a message (binary packet, or a text event); never waits."""
        if self.closed:
            return
        self._queue.append((message, samples))
        self._queued += samples
        while self._queued > self._capacity and len(self._queue) > 1:
            old, n = self._queue.popleft()
            if isinstance(old, str):  # events (start, end) are kept: put it back first
                self._queue.appendleft((old, n))
                break
            self._queued -= n
            self.dropped_packets += 1
        self._ready.set()

    def start(
        self, codec: str, rate_hz: int, channels: int, frame_ms: float, pre_skip: int
    ) -> None:
        """A new codec stream begins (first, and after every reconnect of the sender)."""
        self.offer(
            json.dumps(
                {
                    "type": "start",
                    "codec": codec,
                    "rate_hz": rate_hz,
                    "channels": channels,
                    "frame_ms": frame_ms,
                    "pre_skip": pre_skip,
                }
            )
        )

    def end(self, outcome: str) -> None:
        self.offer(json.dumps({"type": "end", "outcome": outcome}))
        self.closed = True  # nothing more after it
        self._ready.set()

    @property
    def stalled(self) -> bool:
        return bool(self._queue) and time.monotonic() - self._last_progress > self.stalled_s

    async def run(self) -> None:
        """Write the queue to the socket until the stream ends or the listener goes."""
        ws = self.ws
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    message, samples = self._queue.popleft()
                    self._queued -= samples
                    if isinstance(message, str):
                        await ws.send_str(message)
                    else:
                        await ws.send_bytes(message)
                    self.sent_bytes += len(message)
                    self._last_progress = time.monotonic()
                if self.closed or ws.closed:
                    break
        except (ConnectionError, RuntimeError):
            pass  # the listener went away
        finally:
            self.closed = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()

    def stop(self) -> None:
        """The listener went (its socket closed): end the writing task."""
        self.closed = True
        self._ready.set()

    def abort(self, reason: str) -> None:
        """Drop a listener that stopped reading."""
        log.warning("listener of %r: %s; disconnected", self.stream, reason)
        self.closed = True
        self._ready.set()
        transport: Any = self.ws._req.transport if self.ws._req is not None else None
        if transport is not None:
            transport.abort()


class Listeners:
    """A stream's browser listeners: the sink that fans each packet out to every one of
    them (each with its own bounded queue, :class:`Listener`)."""

    def __init__(self, params: StreamParams) -> None:
        self.params = params
        self.all: set[Listener] = set()
        #: Packets dropped for listeners that have left (those of the others: their own).
        self.dropped_gone = 0
        self._seq = 0  # sequence numbers of decoded packets made for PCM listeners

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self) -> Iterator[Listener]:
        return iter(list(self.all))

    @property
    def dropped_packets(self) -> int:
        return self.dropped_gone + sum(listener.dropped_packets for listener in self.all)

    @property
    def sent_bytes(self) -> int:
        return sum(listener.sent_bytes for listener in self.all)

    def add(self, listener: Listener) -> None:
        self.all.add(listener)
        self._start(listener)

    def remove(self, listener: Listener) -> None:
        self.all.discard(listener)
        self.dropped_gone += listener.dropped_packets

    def restart(self) -> None:
        """A new codec stream begins (a new connection of the sender): listeners reset
        their decoder."""
        for listener in self.all:
            self._start(listener)

    def _start(self, listener: Listener) -> None:
        p = self.params
        codec = "pcm" if listener.pcm else p.codec
        pre_skip = 0 if listener.pcm else p.pre_skip
        listener.start(codec, p.rate_hz, p.channels, p.frame_ms, pre_skip)

    def deliver(self, delivery: Delivery) -> None:
        """Each listener gets the packet as it came, or, if it asked for PCM and the stream
        is Opus, what the packet decoded to."""
        raw: bytes | None = None
        pcm: list[bytes] | None = None
        for listener in self.all:
            if listener.pcm and self.params.codec != "pcm":
                if pcm is None:
                    pcm = self._pcm_packets(delivery)
                for data in pcm:
                    listener.offer(data, (len(data) - HEADER.size) // (2 * self.params.channels))
            else:
                if raw is None:
                    raw = delivery.packet.serialize()
                listener.offer(raw, delivery.packet.samples)

    def _pcm_packets(self, delivery: Delivery) -> list[bytes]:
        out = []
        at = delivery.start
        for segment in delivery.segments:
            if not isinstance(segment, int):
                payload = segment.astype("<i2").tobytes()
                capture = delivery.packet.capture_time_us
                out.append(Packet(self._seq, at, len(segment), payload, capture).serialize())
                self._seq += 1
            at += segment_length(segment)
        return out

    def end(self, outcome: str) -> None:
        """The stream ended: each listener hears how, then its socket closes."""
        for listener in list(self.all):
            listener.end(outcome)

    def stop(self) -> None:
        for listener in list(self.all):
            listener.stop()
