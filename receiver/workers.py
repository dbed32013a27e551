"""The worker processes of ``micwire receive --workers N``: start, watch, stop.

Each worker is ``python -m micwire.app.worker``, its configuration on standard input
(tokens never show in ``ps``), holding its end of the socket pair its connections are
handed over on (micwire.receiver.acceptor). The supervisor (micwire.receiver.supervisor)
waits for every worker to say it is ready, has a worker that dies started again (its
senders reconnect and resume from the sidecars it left, as after a restart of a
receiver) unless it keeps dying at once, and stops them all at the end, killing those
that do not finish their streams in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import TransportError
from .config import ReceiverConfig
from .control import Line

log = logging.getLogger("micwire.receiver")
#: A worker must say it is ready within this time.
START_TIMEOUT_S = 30.0
#: Workers have this long to finalise their streams at a stop before they are killed.
STOP_TIMEOUT_S = 20.0
#: A worker that dies this soon after its start twice in a row is not started again.
CRASH_LOOP_S = 5.0


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    line: Line | None = None
    #: The supervisor's end of the socket pair connections are handed over.
    handing: socket.socket | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    quick_deaths: int = 0
    live: int = 0
    stats: list[dict[str, Any]] = field(default_factory=list)


class Workers:
    """The worker processes, by index.

    ``configure(index, handed_fd)`` is a worker's configuration, given its end of the
    hand-over pair; ``on_death(worker)`` hears of a worker that died (before it is started
    again).
    """

    def __init__(
        self,
        count: int,
        configure: Callable[[int, int], ReceiverConfig],
        on_death: Callable[[Worker], None],
    ) -> None:
        self.all = [Worker(i) for i in range(count)]
        self._configure = configure
        self._on_death = on_death
        #: The receiver is stopping: a worker that exits is not started again.
        self.stopping = False
        #: Why the receiver stopped on its own (a worker that keeps dying).
        self.failed: str | None = None

    def __iter__(self) -> Iterator[Worker]:
        return iter(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def __getitem__(self, index: int) -> Worker:
        return self.all[index]

    async def start(self, worker: Worker) -> None:
        if worker.handing is not None:
            worker.handing.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        worker.handing = ours
        config = self._configure(worker.index, theirs.fileno())
        worker.ready = asyncio.Event()
        worker.started = time.monotonic()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "micwire.app.worker",
                *(["--debug"] if log.isEnabledFor(logging.DEBUG) else []),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        assert worker.process.stdin is not None
        worker.process.stdin.write(json.dumps(config.to_json()).encode())
        worker.process.stdin.close()

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in self.all:
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

    async def watch(self, worker: Worker, stop: asyncio.Event) -> None:
        """Start the worker again when it dies (not while stopping)."""
        while not self.stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            if self.stopping:
                return
            quick = time.monotonic() - worker.started < CRASH_LOOP_S
            worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
            self._on_death(worker)
            if worker.quick_deaths >= 2:
                self.failed = f"receiver worker {worker.index} keeps dying (exit {code})"
                log.error("%s; stopping", self.failed)
                stop.set()
                return
            log.error(
                "receiver worker %d died (exit %s); starting it again: its senders "
                "reconnect and resume",
                worker.index,
                code,
            )
            await self.start(worker)

    async def stop_all(self) -> None:
        running = [w for w in self.all if w.process and w.process.returncode is None]
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
        for worker in self.all:
            if worker.handing is not None:
                worker.handing.close()


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
