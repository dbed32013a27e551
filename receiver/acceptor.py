"""The port of ``micwire receive --workers N``: accept, read the request line, hand the
connection to its worker.

The supervisor listens on the port; each connection is given, as it is (nothing read
from it: the request line is only peeked at), to the worker that owns the stream its path
names (:func:`micwire.common.routing.owner`), or, for a path that names none (the monitor
page, the API, downloads), to the workers in turn. The socket goes over a Unix socket pair
(``SCM_RIGHTS``); the worker serves it as if it had accepted it. So every stream lives in
one process for its whole life, and a sender that reconnects finds its stream where it
left it.

A client that does not finish its request line within the hello timeout is closed here,
as a worker would close it (a slowloris holds nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from ..common.routing import name_in_path, owner, request_path

log = logging.getLogger("micwire.receiver")
#: The request line must be within this many bytes (a worker answers a longer one 414).
PEEK_BYTES = 8192
#: How often an incomplete request line is looked at again.
PEEK_AGAIN_S = 0.02


class Acceptor:
    """Listening sockets whose connections go to ``hand(worker, sock)``."""

    def __init__(
        self,
        listeners: list[socket.socket],
        workers: int,
        hand: Callable[[int, socket.socket], None],
        timeout_s: float,
    ) -> None:
        self.listeners = listeners
        self.workers = workers
        self.hand = hand
        self.timeout_s = timeout_s
        self._turn = itertools.cycle(range(workers))
        self._waiting: dict[int, tuple[socket.socket, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for listener in self.listeners:
            listener.setblocking(False)
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    def close(self) -> None:
        self._closed = True
        if self._loop is not None:
            for listener in self.listeners:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(listener.fileno())
            for fd, (sock, _) in list(self._waiting.items()):
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(fd)
                sock.close()
        self._waiting.clear()
        for listener in self.listeners:
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a burst at a time; the loop comes back for more
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: say so, keep serving
                log.warning("cannot accept a connection: %s", exc.strerror or exc)
                return
            sock.setblocking(False)
            self._wait(sock, time.monotonic() + self.timeout_s)

    def _wait(self, sock: socket.socket, deadline: float) -> None:
        assert self._loop is not None
        if self._closed:
            sock.close()
            return
        self._waiting[sock.fileno()] = (sock, deadline)
        self._loop.add_reader(sock.fileno(), self._peek, sock)

    def _peek(self, sock: socket.socket) -> None:
        assert self._loop is not None
        fd = sock.fileno()
        _, deadline = self._waiting.pop(fd)
        self._loop.remove_reader(fd)
        try:
            head = sock.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._wait(sock, deadline)
            return
        except OSError:
            sock.close()
            return
        if not head:  # gone before a word
            sock.close()
        elif b"\r\n" in head or len(head) >= PEEK_BYTES:
            self._route(sock, request_path(head) or "")
        elif time.monotonic() > deadline:
            sock.close()
        else:  # the line is not whole yet: look again shortly (peeked data stays readable)
            self._loop.call_later(PEEK_AGAIN_S, self._wait, sock, deadline)

    def _route(self, sock: socket.socket, path: str) -> None:
        name = name_in_path(path)
        worker = owner(name, self.workers) if name is not None else next(self._turn)
        try:
            self.hand(worker, sock)
        finally:
            sock.close()  # the worker has its own descriptor now


class HandedConnections:
    """A worker's side: connections the supervisor hands over, served by ``runner`` (an
    aiohttp AppRunner, set up) as if it had accepted them. ``gone`` is called when the
    supervisor's end closes."""

    def __init__(self, fd: int, runner: Any, gone: Callable[[], None]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self._runner = runner
        self._gone = gone
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._loop.add_reader(self._sock.fileno(), self._receive)

    def stop(self) -> None:
        """No more connections taken (those being served go on)."""
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _receive(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self._sock, 16, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            for fd in fds:
                task = self._loop.create_task(self._serve(socket.socket(fileno=fd)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not message and not fds:  # the supervisor is gone
                self.stop()
                self._gone()
                return

    async def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            await self._loop.connect_accepted_socket(self._runner.server, sock)
        except OSError:
            sock.close()  # gone meanwhile
