"""``micwire receive --workers N``: N receiver processes on one port, seen as one receiver.

The supervisor reserves the port, starts the workers (``python -m micwire.app.worker``, its
configuration on standard input: tokens never show in ``ps``), and then:

- says which worker holds which stream name (receiver/cluster.py): a worker asks before it
  takes a name, and a name held elsewhere is handed over only to the stream's own sender;
- answers a worker's "everybody's streams" (the page, ``/api/streams``, ``/metrics``) by
  asking the others;
- shows every worker's log lines and figures as one receiver's (terminal, --stats-json);
- starts a worker again if it dies (its senders reconnect, resume from the sidecars and
  lose nothing), and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..common.errors import MicwireError, TransportError
from . import logs
from .cluster import LINE_LIMIT, Line
from .config import (
    ReceiverConfig,
    announce,
    listen_error,
    netloc,
    open_warning,
)
from .server import CONTROL_SOCKET, LIMITED_LOGGERS, Receiver, open_stats_file
from .storage import repair_interrupted

log = logging.getLogger("micwire.receiver")
#: A worker must say it listens within this time.
START_TIMEOUT_S = 30.0
#: Workers have this long to finalise their streams at a stop before they are killed.
STOP_TIMEOUT_S = 20.0
#: A dead worker's sidecars are repaired this long after (the repair leaves alone what
#: was written in the last 5 s: a stream its sender has continued on another worker).
REPAIR_AFTER_S = 6.0
#: A worker that dies this soon after its start twice in a row is not started again.
CRASH_LOOP_S = 5.0


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    line: Line | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    quick_deaths: int = 0
    stats: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Owner:
    worker: int
    state: str  # admitting, live, parked, held


class Supervisor:
    def __init__(self, config: ReceiverConfig, workers: int) -> None:
        if workers < 2:
            raise MicwireError("--workers needs 2 or more (1 is a plain receiver)")
        self.config = config
        self.on_stats = config.on_stats
        # every check a receiver makes at its start (tokens, formats, TLS files, the
        # recording directory) is made here once, for one clear error before any worker
        Receiver(self._worker_config(0, Path(tempfile.gettempdir()), config.port))
        self._stats_file = open_stats_file(config.stats_json)
        self.workers = [Worker(i) for i in range(workers)]
        self.owners: dict[str, Owner] = {}
        self._name_locks: dict[str, tuple[asyncio.Lock, int]] = {}  # (lock, its users)
        self.stopping = False
        self.port: int | None = None
        self._failed: str | None = None
        self._repairs: set[asyncio.Task[None]] = set()

    def _worker_config(self, index: int, run_dir: Path, port: int) -> ReceiverConfig:
        return replace(
            self.config,
            port=port,
            reuse_port=True,
            play=False,
            on_stats=None,
            stats_json=None,
            run_dir=run_dir,
            worker=index,
        )

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        reserved = self._reserve_port()
        self.port = reserved.getsockname()[1]
        watchers: list[asyncio.Task[None]] = []
        run_dir = Path(tempfile.mkdtemp(prefix="micwire-receive-"))  # private: mode 0700
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
            if self.config.record_dir is not None:  # once, before any worker writes there
                for path in await asyncio.to_thread(repair_interrupted, self.config.record_dir):
                    log.info(
                        "%s: the recording was interrupted; its sidecar is up to date", path.name
                    )
            for worker in self.workers:
                await self._start(worker, run_dir)
            await self._wait_ready()
            reserved.close()
            self._announce()
            if ready is not None:
                ready(self.port)
            watchers = [asyncio.create_task(self._watch(w, run_dir, stop)) for w in self.workers]
            await stop.wait()
        finally:
            self.stopping = True
            reserved.close()
            for task in [*watchers, *self._repairs]:
                task.cancel()
            await self._stop_all()
            if server is not None:
                server.close()
            if self._stats_file is not None:
                self._stats_file.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            logs.report_left_out(*LIMITED_LOGGERS)
        if self._failed is not None:
            raise MicwireError(self._failed)

    def _reserve_port(self) -> socket.socket:
        """Bind the port (SO_REUSEPORT, like the workers) to learn it when it is 0; first
        without SO_REUSEPORT, on every address the workers will use, to fail when anything
        holds it — another receiver with workers included, which SO_REUSEPORT alone would
        let share the port (and its connections) silently."""
        port = self.config.port
        for index, (family, host) in enumerate(self._addresses()):
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # a listener still fails this bind; connections lingering in TIME_WAIT
                # from the last run (every stream that ended) do not
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    if index and exc.errno == errno.EAFNOSUPPORT:
                        continue  # no IPv6 here: the workers will not listen there either
                    raise listen_error(netloc(host, port), exc) from exc
                port = probe.getsockname()[1]
        family, host = self._addresses()[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise listen_error(netloc(host, port), exc) from exc
        return sock

    def _addresses(self) -> list[tuple[socket.AddressFamily, str]]:
        host = self.config.host
        if host is None:  # every interface: IPv4 and IPv6, like aiohttp's site
            return [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
        return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]

    async def _start(self, worker: Worker, run_dir: Path) -> None:
        assert self.port is not None
        config = self._worker_config(worker.index, run_dir, self.port)
        worker.ready = asyncio.Event()
        worker.started = time.monotonic()
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "micwire.app.worker",
            *(["--debug"] if log.isEnabledFor(logging.DEBUG) else []),
            stdin=asyncio.subprocess.PIPE,
        )
        assert worker.process.stdin is not None
        worker.process.stdin.write(json.dumps(config.to_json()).encode())
        worker.process.stdin.close()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in self.workers:
            assert worker.process is not None
            waiting = asyncio.create_task(worker.ready.wait())
            exited = asyncio.create_task(worker.process.wait())
            await asyncio.wait(
                (waiting, exited),
                timeout=max(0.1, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiting.cancel()
            exited.cancel()
            if not worker.ready.is_set():
                code = worker.process.returncode
                raise TransportError(
                    f"receiver worker {worker.index} did not start"
                    + (f" (it exited with {code}: see its error above)" if code is not None else "")
                )

    def _announce(self) -> None:
        cfg = self.config
        assert self.port is not None
        note = f"{len(self.workers)} workers" + ("; token required" if cfg.token else "")
        senders, page = announce(cfg.host, self.port, cfg.certfile is not None, note)
        log.info("listening on %s", senders)
        if cfg.web:
            log.info("monitor page: %s", page)
        warning = open_warning(replace(cfg, port=self.port))
        if warning is not None:
            log.warning("%s", warning)

    async def _watch(self, worker: Worker, run_dir: Path, stop: asyncio.Event) -> None:
        """Start the worker again when it dies (not while stopping)."""
        while not self.stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            if self.stopping:
                return
            quick = time.monotonic() - worker.started < CRASH_LOOP_S
            worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
            orphaned = self._forget(worker.index)
            if orphaned and self.config.record_dir is not None:
                repair = asyncio.create_task(self._repair(orphaned))
                self._repairs.add(repair)
                repair.add_done_callback(self._repairs.discard)
            if worker.quick_deaths >= 2:
                self._failed = f"receiver worker {worker.index} keeps dying (exit {code})"
                log.error("%s; stopping", self._failed)
                stop.set()
                return
            log.error(
                "receiver worker %d died (exit %s); starting it again: its senders "
                "reconnect and resume",
                worker.index,
                code,
            )
            await self._start(worker, run_dir)

    def _forget(self, index: int) -> set[str]:
        """A dead worker holds no names: its streams' senders resume elsewhere, from the
        sidecars it left. Returns the names it held."""
        names = {n for n, o in self.owners.items() if o.worker == index}
        for name in names:
            del self.owners[name]
        return names

    async def _repair(self, streams: set[str]) -> None:
        """A dead worker's sidecars that still say "recording" (their senders did not come
        back to continue them elsewhere) are brought up to date, as at a start."""
        assert self.config.record_dir is not None
        await asyncio.sleep(REPAIR_AFTER_S)
        for path in await asyncio.to_thread(repair_interrupted, self.config.record_dir, streams):
            log.info("%s: the recording was interrupted; its sidecar is up to date", path.name)

    async def _stop_all(self) -> None:
        running = [w for w in self.workers if w.process and w.process.returncode is None]
        for worker in running:
            assert worker.process is not None
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        waits = [w.process.wait() for w in running if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            for worker in running:
                if worker.process is not None and worker.process.returncode is None:
                    log.error("receiver worker %d did not stop in time; killing it", worker.index)
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()

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
            self._forget(worker.index)

    async def _handle(self, worker: Worker, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ready":
            worker.ready.set()
        elif op == "log":
            _show(message)
        elif op == "stats":
            worker.stats = list(message.get("lines", []))
            self._stats(worker.stats)
        elif op == "state":
            self._state(worker.index, str(message["name"]), str(message["state"]))
        elif op == "acquire":
            return await self._acquire(worker.index, str(message["name"]), str(message["hello"]))
        elif op == "owner":
            owner = self.owners.get(str(message["name"]))
            return {"worker": owner.worker if owner is not None else None}
        elif op in ("views", "metrics"):
            return {"answers": await self._ask_others(worker.index, op)}
        return {}

    def _stats(self, lines: list[dict[str, Any]]) -> None:
        if self._stats_file is not None:
            try:
                self._stats_file.writelines(json.dumps(line) + "\n" for line in lines)
            except OSError as exc:
                log.error("cannot write --stats-json: %s", exc.strerror or exc)
        if self.on_stats is not None:
            self.on_stats([line for w in self.workers for line in w.stats])

    def _state(self, index: int, name: str, state: str) -> None:
        owner = self.owners.get(name)
        if owner is not None and owner.worker != index:
            return  # the name has moved on: an old worker's news
        if state == "free":
            self.owners.pop(name, None)
        else:
            self.owners[name] = Owner(index, state)

    async def _acquire(self, index: int, name: str, hello: str) -> dict[str, Any]:
        lock, users = self._name_locks.get(name) or (asyncio.Lock(), 0)
        self._name_locks[name] = (lock, users + 1)
        try:
            async with lock:
                owner = self.owners.get(name)
                handed_over = False
                carry = None
                if owner is not None and owner.worker != index:
                    holder = self.workers[owner.worker].line
                    if holder is not None:
                        try:
                            answer = await holder.ask("handoff", hello=hello)
                        except (TransportError, asyncio.TimeoutError):
                            return {"refuse": "the stream's worker is not answering; retry"}
                        if answer.get("refuse") or answer.get("error"):
                            return {
                                "refuse": answer.get("refuse") or answer["error"],
                                "retry_after_s": answer.get("retry_after_s"),
                            }
                        handed_over = bool(answer.get("proven"))
                        carry = answer.get("carry")
                self.owners[name] = Owner(index, "admitting")
                live = sum(
                    1
                    for o in self.owners.values()
                    if o.worker != index and o.state in ("admitting", "live")
                )
                return {"live_elsewhere": live, "handed_over": handed_over, "carry": carry}
        finally:
            lock, users = self._name_locks[name]
            if users == 1:
                del self._name_locks[name]
            else:
                self._name_locks[name] = (lock, users - 1)

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


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
