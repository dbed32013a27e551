"""A TCP proxy for network fault injection between sender and receiver (127.0.0.1 only).

It forwards bytes both ways and can, on command: ``cut()`` every connection (abrupt reset,
no WebSocket close, like a dropped Wi-Fi link), ``stall(s)`` all forwarding for a while,
``freeze()`` the connections open now for good (half-open links: nothing more gets
through, nobody is told) while new ones work, ``refuse_new`` connections (the receiver is
unreachable), and add ``delay_s`` (+ random ``jitter_s``) to every chunk it forwards, or
forward at most ``rate_bytes_s`` bytes a second each way (a link slower than the stream).

It also notes, in ``stalls``, when the stream towards the target was held up by something
other than the impairment asked for: a chunk it forwarded more than ``STALL_S`` after it
was due (this process did not run), or, given ``steady_s`` (the sender writes at least
that often: a live stream's packets), a silence from the sender longer than that plus
``STALL_S`` (the sender did not run). On a loaded machine those are what a listener hears
as a glitch that no network caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from typing import Any

#: Lateness beyond the impairment that counts as a stall of a process on the way.
STALL_S = 0.010


class ImpairmentProxy:
    def __init__(
        self,
        target_port: int,
        delay_s: float = 0.0,
        jitter_s: float = 0.0,
        source_ports: list[int] | None = None,
        rate_bytes_s: float | None = None,
        steady_s: float | None = None,
    ) -> None:
        self.target_port = target_port
        #: Connect to the target from these local ports, one after another (to choose
        #: which of several SO_REUSEPORT processes each connection lands on).
        self.source_ports = list(source_ports or [])
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        #: When set, each direction forwards at most this many bytes a second (a proxy
        #: made with it takes in little at a time too, as a slow link would).
        self.rate_bytes_s = rate_bytes_s
        self.steady_s = steady_s
        #: When (time.time()) the stream towards the target was held up by a stall.
        self.stalls: list[float] = []
        self.port = 0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._frozen: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()
        #: While set, new connections are reset at once.
        self.refuse_new = False

    async def __aenter__(self) -> ImpairmentProxy:
        if self.rate_bytes_s:  # a small window: the sender's socket fills up soon
            sock = socket.create_server(("127.0.0.1", 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            self._server = await asyncio.start_server(self._serve, sock=sock, limit=4096)
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for writer in self._frozen:
            writer.transport.abort()
        self._closing.set()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Reset every open connection, both sides, without any goodbye."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def freeze(self) -> None:
        """The connections open now forward nothing more, ever, and are not closed."""
        self._frozen |= self._writers
        self._writers = set()

    async def stall(self, seconds: float) -> None:
        """Forward nothing, either way, for ``seconds``."""
        self._open.clear()
        await asyncio.sleep(seconds)
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            writer.transport.abort()
            return
        self.connections += 1
        try:
            local = ("127.0.0.1", self.source_ports.pop(0)) if self.source_ports else None
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port, local_addr=local
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True), self._pipe(up_reader, writer)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        waiting_since: float | None = None  # when it began to wait for the sender
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(4096 if self.rate_bytes_s else 65536):
                arrived = loop.time()
                silent = 0.0 if waiting_since is None else arrived - waiting_since
                if upstream and self.steady_s is not None and silent > self.steady_s + STALL_S:
                    self.stalls.append(time.time())
                await self._open.wait()
                if writer in self._frozen:
                    await self._closing.wait()  # a link that went dead silently
                if self.delay_s or self.jitter_s:
                    # each chunk leaves its delay after it *arrived* (in order, as TCP
                    # keeps it): delays summed one after the other would make a queue
                    # that grows without bound whenever the mean delay nears the interval
                    delay = self.delay_s + random.uniform(0, self.jitter_s)
                    due = max(due, arrived + delay)
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    if upstream and loop.time() - due > STALL_S:
                        self.stalls.append(time.time())
                writer.write(data)
                await writer.drain()
                waiting_since = loop.time()
                if self.rate_bytes_s:
                    await asyncio.sleep(len(data) / self.rate_bytes_s)
        writer.transport.abort()
        self._writers.discard(writer)


class ProxyThread:
    """An :class:`ImpairmentProxy` on its own event loop thread, for synchronous tests."""

    def __init__(self, target_port: int, **impairments: Any) -> None:
        """``impairments``: :class:`ImpairmentProxy`'s keyword arguments."""
        import threading

        self.loop = asyncio.new_event_loop()
        self.proxy = ImpairmentProxy(target_port, **impairments)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.__aenter__(), self.loop).result(10)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def stalls(self) -> list[float]:
        """:attr:`ImpairmentProxy.stalls` so far."""
        return list(self.proxy.stalls)

    def cut(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.cut)

    def freeze(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.freeze)

    def stall(self, seconds: float) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stall(seconds), self.loop).result(seconds + 5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.__aexit__(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
