"""``micwire receive --workers N``: N receiver processes on one port, seen as one receiver.

The supervisor listens on the port and hands each connection to the worker that owns the
stream its path names (micwire.receiver.acceptor; a name's owner is a hash of it,
micwire.common.routing): a stream lives in one worker for its whole life, so nothing about
it is ever handed between processes. Its workers are started, started again if they die
(the connections of their streams come back to them, and their senders resume from the
sidecars they left, as after a restart of a receiver) and stopped on SIGINT/SIGTERM by
micwire.receiver.workers. Over the control line (micwire.receiver.control) the supervisor:

- tells each worker how many streams the others have live (``--max-streams`` is the
  whole receiver's);
- answers a worker's "everybody's streams" (the page, ``/api/streams``, ``/metrics``) by
  asking the others;
- shows every worker's log lines and figures as one receiver's (terminal, --stats-json).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import json
import logging
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..common.errors import MicwireError, ParameterError, TransportError
from . import logs
from .acceptor import Acceptor
from .config import ReceiverConfig, announce, listen_error, netloc, open_warning
from .control import LINE_LIMIT, Line
from .monitor import open_stats_file
from .server import CONTROL_SOCKET, LIMITED_LOGGERS, Receiver
from .workers import Worker, Workers

log = logging.getLogger("micwire.receiver")


class Supervisor:
    def __init__(self, config: ReceiverConfig, workers: int) -> None:
        if workers < 2:
            raise MicwireError("--workers needs 2 or more (1 is a plain receiver)")
        if config.certfile is not None:
            # the supervisor routes a connection by its request path, which TLS hides
            raise ParameterError(
                "--workers serves plain ws:// and http:// (it routes each connection by the "
                "stream name in its path, which TLS would hide): terminate TLS in front of "
                "it (HAProxy, docs/DEPLOY.md), or run one receiver process for wss://"
            )
        self.config = config
        self.on_stats = config.on_stats
        # every check a receiver makes at its start (tokens, formats, the recording
        # directory) is made here once, for one clear error before any worker
        Receiver(self._worker_config(0, workers, Path(tempfile.gettempdir()), config.port))
        self._stats_file = open_stats_file(config.stats_json)
        # a worker that died has no live streams: the others hear the new total
        self.workers = Workers(workers, self._configure, lambda worker: self._live(worker, 0))
        self.port: int | None = None
        #: The supervisor's private directory (mode 0700): the control socket, while it runs.
        self._run_dir: Path | None = None

    def _worker_config(
        self, index: int, workers: int, run_dir: Path, port: int, handed_fd: int | None = None
    ) -> ReceiverConfig:
        return replace(
            self.config,
            port=port,
            play=False,
            on_stats=None,
            stats_json=None,
            run_dir=run_dir,
            worker=index,
            workers=workers,
            handed_fd=handed_fd,
        )

    def _configure(self, index: int, handed_fd: int) -> ReceiverConfig:
        """A worker's configuration, once the port and the run directory are known."""
        assert self.port is not None and self._run_dir is not None
        return self._worker_config(index, len(self.workers), self._run_dir, self.port, handed_fd)

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        listeners = self._listen()
        self.port = listeners[0].getsockname()[1]
        acceptor = Acceptor(listeners, len(self.workers), self._hand, self.config.hello_timeout_s)
        watchers: list[asyncio.Task[None]] = []
        run_dir = self._run_dir = Path(tempfile.mkdtemp(prefix="micwire-receive-"))  # mode 0700
        server: asyncio.AbstractServer | None = None
        try:
            try:
                server = await asyncio.start_unix_server(
                    self._connected, str(run_dir / CONTROL_SOCKET), limit=LINE_LIMIT
                )
            except OSError as exc:
                raise TransportError(
                    f"cannot make the workers' control socket in {run_dir}: "
                    f"{exc.strerror or exc} (a shorter TMPDIR?)"
                ) from exc
            for worker in self.workers:
                await self.workers.start(worker)
            await self.workers.wait_ready()
            acceptor.start()
            self._announce()
            if ready is not None:
                ready(self.port)
            watchers = [asyncio.create_task(self.workers.watch(w, stop)) for w in self.workers]
            await stop.wait()
        finally:
            self.workers.stopping = True
            acceptor.close()  # no new connections: a reconnecting sender finds our successor
            for task in watchers:
                task.cancel()
            await self.workers.stop_all()
            if server is not None:
                server.close()
            if self._stats_file is not None:
                self._stats_file.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            logs.report_left_out(*LIMITED_LOGGERS)
        if self.workers.failed is not None:
            raise MicwireError(self.workers.failed)

    def _listen(self) -> list[socket.socket]:
        """The port, on every address asked for (no host: IPv4 and IPv6, like a plain
        receiver); a port in use fails here, with the same line."""
        port = self.config.port
        sockets: list[socket.socket] = []
        try:
            for index, (family, host) in enumerate(self._addresses()):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sockets.append(sock)
                # a listener still fails this bind; connections lingering in TIME_WAIT
                # from the last run (every stream that ended) do not
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    if index and exc.errno == errno.EAFNOSUPPORT:
                        sockets.pop().close()
                        continue  # no IPv6 here
                    raise listen_error(netloc(host, port), exc) from exc
                port = sock.getsockname()[1]  # --port 0: the same port on every address
                sock.listen(1024)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets

    def _addresses(self) -> list[tuple[socket.AddressFamily, str]]:
        host = self.config.host
        if host is None:  # every interface: IPv4 and IPv6, like aiohttp's site
            return [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
        return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]

    def _hand(self, index: int, sock: socket.socket) -> None:
        """Give a connection to its worker (the acceptor closes our descriptor)."""
        worker = self.workers[index]
        handing = worker.handing
        if handing is None or not worker.ready.is_set():
            return  # starting again: the client retries (a sender resumes)
        try:
            socket.send_fds(handing, [b"c"], [sock.fileno()])
        except (BrokenPipeError, ConnectionResetError):  # it died; its death is said next
            log.warning(
                "receiver worker %d has gone: a connection for it is closed (its client "
                "retries once the worker is started again)",
                index,
            )
        except OSError as exc:  # its queue is full: the worker is stuck
            log.warning("receiver worker %d cannot take a connection: %s", index, exc)

    def _announce(self) -> None:
        cfg = self.config
        assert self.port is not None
        note = f"{len(self.workers)} workers" + ("; token required" if cfg.token else "")
        senders, page = announce(cfg.host, self.port, False, note)
        log.info("listening on %s", senders)
        if cfg.web:
            log.info("monitor page: %s", page)
        warning = open_warning(replace(cfg, port=self.port))
        if warning is not None:
            log.warning("%s", warning)

    # --- the control line --------------------------------------------------------------
    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder: dict[str, Worker] = {}

        async def handle(message: dict[str, Any]) -> dict[str, Any]:
            op = message.get("op")
            if op == "hello":
                worker = self.workers[int(message["worker"])]
                worker.line = line
                holder["worker"] = worker
                return {}
            sender = holder.get("worker")
            if sender is None:
                return {"error": "say hello first"}
            return await self._handle(sender, message)

        line = Line(reader, writer, handle)
        await line.serve()
        worker = holder.get("worker")
        if worker is not None and worker.line is line:
            worker.line = None

    async def _handle(self, worker: Worker, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ready":
            worker.ready.set()
        elif op == "log":
            _show(message)
        elif op == "stats":
            worker.stats = list(message.get("lines", []))
            self._stats(worker.stats)
        elif op == "live":
            self._live(worker, int(message.get("count", 0)))
        elif op in ("views", "metrics"):
            return {"answers": await self._ask_others(worker.index, op)}
        return {}

    def _live(self, worker: Worker, count: int) -> None:
        """A worker's live streams changed: the others hear the new total elsewhere."""
        worker.live = count
        total = sum(w.live for w in self.workers)
        for other in self.workers:
            if other is not worker and other.line is not None:
                with contextlib.suppress(TransportError, ConnectionError):
                    other.line.tell("elsewhere", live=total - other.live)

    def _stats(self, lines: list[dict[str, Any]]) -> None:
        if self._stats_file is not None:
            try:
                self._stats_file.writelines(json.dumps(line) + "\n" for line in lines)
            except OSError as exc:
                log.error("cannot write --stats-json: %s", exc.strerror or exc)
        if self.on_stats is not None:
            self.on_stats([line for w in self.workers for line in w.stats])

    async def _ask_others(self, index: int, op: str) -> list[Any]:
        lines = [w.line for w in self.workers if w.index != index and w.line is not None]
        answers = await asyncio.gather(
            *(line.ask(op, timeout_s=2.0) for line in lines), return_exceptions=True
        )
        key = "views" if op == "views" else "text"
        return [a[key] for a in answers if isinstance(a, dict) and key in a]


def _show(message: dict[str, Any]) -> None:
    """A worker's log line, through this process's filters and handlers: the repeat limiter
    (micwire.receiver.logs) counts each peer's lines over all workers, as one receiver's."""
    record = logging.makeLogRecord(
        {
            "name": str(message.get("logger", "micwire")),
            "levelno": int(message.get("level", logging.INFO)),
            "levelname": logging.getLevelName(int(message.get("level", logging.INFO))),
            "msg": str(message.get("message", "")),
            "template": str(message.get("template", "")) or None,
        }
    )
    logger = logging.getLogger(record.name)

    def show() -> None:
        logs.PEER.set(str(message.get("peer", "")))
        logs.STREAM.set(str(message.get("stream", "")))
        if record.levelno < logger.getEffectiveLevel() or not logger.filter(record):
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    contextvars.copy_context().run(show)
