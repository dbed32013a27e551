"""The line between the supervisor of ``micwire receive --workers N`` and its workers
(the other side: :mod:`micwire.receiver.supervisor`).

Each stream name belongs to one worker (micwire.common.routing: the supervisor hands
each connection to its owner), so there are no names to agree on over this line: a
worker says it is ready, how many streams it has live (``--max-streams`` counts the whole
receiver), its log lines and its figures once a second; the supervisor answers a worker's
"everybody's streams" (the page, ``/api/streams``, ``/metrics``) by asking the others.

The line is a Unix socket in the supervisor's private run directory, one JSON object per
line; either side may ask (``id``) and the other answers (``reply``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..common.errors import TransportError

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")
#: A control line may carry every stream's view (a few hundred bytes each).
LINE_LIMIT = 64 * 1024 * 1024
#: How long a question to the supervisor (and through it, another worker) may take.
REQUEST_TIMEOUT_S = 10.0


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Line:
    """One end of a control connection: ``ask`` and wait for the reply, ``tell`` and go
    on; questions from the other end go to ``handler``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
    ) -> None:
        self.reader, self.writer = reader, writer
        self.handler = handler
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def tell(self, op: str, **fields: Any) -> None:
        self._write({"op": op, **fields})

    async def ask(self, op: str, timeout_s: float = REQUEST_TIMEOUT_S, **fields: Any) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self._write({"op": op, "id": request_id, **fields})
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._waiting.pop(request_id, None)

    def _write(self, message: dict[str, Any]) -> None:
        if self.writer.is_closing():
            raise TransportError("the line to the other process is closed")
        self.writer.write(json.dumps(message).encode() + b"\n")

    async def serve(self) -> None:
        """Read until the other end goes; then every question still waiting fails."""
        try:
            while line := await self.reader.readline():
                message = json.loads(line)
                if "reply" in message:
                    future = self._waiting.get(message["reply"])
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                task = asyncio.create_task(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, ValueError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(TransportError("the other process is gone"))
            self.writer.close()

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            answer = await self.handler(message)
        except Exception as exc:  # an answer always goes back: the asker must not hang
            log.exception("control request %r failed", message.get("op"))
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        if "id" in message:
            with contextlib.suppress(TransportError, ConnectionError):
                self._write({"reply": message["id"], **answer})


class WorkerLink:
    """A worker's line to its supervisor."""

    def __init__(self, control_path: str, worker: int) -> None:
        self.control_path = control_path
        self.worker = worker
        self.receiver: Receiver | None = None
        self.line: Line | None = None
        self._serving: asyncio.Task[None] | None = None

    async def connect(self, receiver: Receiver) -> None:
        self.receiver = receiver
        reader, writer = await asyncio.open_unix_connection(self.control_path, limit=LINE_LIMIT)
        self.line = Line(reader, writer, self._handle)
        self._serving = asyncio.create_task(self.line.serve())
        self._serving.add_done_callback(self._supervisor_gone)
        self.line.tell("hello", worker=self.worker)

    def _supervisor_gone(self, _: object) -> None:
        """Without its supervisor no connection reaches a worker any more: it finishes its
        streams and stops (their senders resume wherever the receiver runs next)."""
        receiver = self.receiver
        if receiver is not None and not receiver.stopping:
            log.error("receiver worker %d: the supervisor is gone; stopping", self.worker)
            receiver.stop_requested()

    @property
    def connected(self) -> bool:
        return self._serving is not None and not self._serving.done()

    def tell(self, op: str, **fields: Any) -> None:
        if self.line is not None:
            with contextlib.suppress(TransportError, ConnectionError):
                self.line.tell(op, **fields)

    async def ask(self, op: str, **fields: Any) -> Any:
        if self.line is None:
            raise TransportError("not connected to the supervisor")
        return await self.line.ask(op, **fields)

    # --- views of every worker -----------------------------------------------------------
    async def others(self, op: str) -> list[Any]:
        """Every other worker's answer to ``op`` (``views`` or ``metrics``); a worker that
        does not answer in time is left out."""
        try:
            answer = await self.ask(op, timeout_s=3.0)
        except (TransportError, asyncio.TimeoutError):
            return []
        return list(answer.get("answers", []))

    async def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        receiver = self.receiver
        assert receiver is not None
        op = message.get("op")
        if op == "elsewhere":  # live streams on the other workers (--max-streams)
            receiver.streams.live_elsewhere = int(message.get("live", 0))
            return {}
        if op == "views":
            return {"views": receiver.monitor.local_views()}
        if op == "metrics":
            from prometheus_client import generate_latest

            from .metrics import registry_for

            return {"text": generate_latest(registry_for(receiver)).decode()}
        if op == "stop":
            receiver.stop_requested()
            return {}
        return {"error": f"unknown request {op!r}"}


def merge_views(views: list[dict[str, Any]], limit_ended: int) -> list[dict[str, Any]]:
    """Every worker's streams as one list, at most ``limit_ended`` ended ones: the latest
    over every worker (each lists its own latest), and a name once (live over ended)."""
    chosen: dict[str, dict[str, Any]] = {}
    for view in views:
        name = view.get("stream")
        if not isinstance(name, str):
            continue
        held = chosen.get(name)
        if held is None or _shown_before(view, held):
            chosen[name] = view
    # the latest ended over every worker (each lists its own latest): not the first
    # worker's alone
    ended = sorted((v for v in chosen.values() if v.get("state") == "ended"), key=_ended)
    shown = {id(view) for view in ended[::-1][:limit_ended]}
    return [v for v in chosen.values() if v.get("state") != "ended" or id(v) in shown]


def _shown_before(view: dict[str, Any], held: dict[str, Any]) -> bool:
    """Is ``view`` what the page shows of its name rather than ``held``?"""
    if held.get("state") != "ended":
        return False
    return view.get("state") != "ended" or _ended(view) > _ended(held)


def _ended(view: dict[str, Any]) -> float:
    ended = view.get("ended_utc")
    return float(ended) if isinstance(ended, (int, float)) else 0.0


def merge_metrics(texts: list[str]) -> bytes:
    """Prometheus texts of several workers as one receiver's: the same series in several
    (a receiver-wide counter, the streams by state) add up; a stream's series comes from
    the worker that holds it."""
    from prometheus_client import generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector, CollectorRegistry

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series[key] = series.get(key, 0.0) + sample.value

    class Merged(Collector):
        def collect(self) -> Any:
            for name, family in families.items():
                for (sample_name, labels), value in values[name].items():
                    family.add_sample(sample_name, dict(labels), value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry)
