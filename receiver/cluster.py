"""A worker's side of ``micwire receive --workers N`` (the other side:
:mod:`micwire.receiver.supervisor`).

Every worker serves the same port (SO_REUSEPORT: the kernel spreads connections over
them), so a sender that reconnects may land on another worker than its stream's. Which
worker owns which stream name is the supervisor's to say: a worker asks before it takes a
name it does not hold, and the supervisor asks the owner to let go when the newcomer is
the stream's own sender (its resume secret proves it). The owner finalises its part and
the newcomer continues from the sidecar in a new part, exactly as after a restart of the
receiver (gap-free: the sender resends from where the sidecar ends).

The line to the supervisor is a Unix socket in a private run directory, one JSON object
per line; either side may ask (``id``) and the other answers (``reply``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..common.errors import TransportError
from ..common.protocol import Hello
from .holds import Holder

if TYPE_CHECKING:
    from .server import Receiver
    from .streams import Stream, Streams

log = logging.getLogger("micwire.receiver")
#: A control line may carry every stream's view (a few hundred bytes each).
LINE_LIMIT = 64 * 1024 * 1024
#: How long a question to the supervisor (and through it, another worker) may take.
REQUEST_TIMEOUT_S = 10.0
#: The outcome of a stream's part when its sender came back on another worker.
MOVED = "connection lost; continued on another worker"


@dataclass
class Claim:
    """The supervisor's answer to "may this worker take the name?"."""

    refusal: str | None = None  # why not
    retry_after_s: float | None = None  # and when to try again, if known
    live_elsewhere: int = 0  # live streams on the other workers
    handed_over: bool = False  # another worker held it and let the stream's sender go
    carry: dict[str, Any] | None = None  # the stream's figures there (see carried())


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


class ClusterLink:
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
        """Without its supervisor a worker cannot take a name: it finishes its streams and
        stops (their senders resume wherever the receiver runs next)."""
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

    # --- names ----------------------------------------------------------------------------
    async def acquire(self, hello: Hello) -> Claim:
        """Take ``hello``'s stream name for this worker."""
        try:
            answer = await self.ask("acquire", name=hello.stream, hello=hello.serialize())
        except (TransportError, asyncio.TimeoutError):
            return Claim("the receiver's supervisor is not answering; retry")
        after = answer.get("retry_after_s")
        return Claim(
            answer.get("refuse"),
            float(after) if isinstance(after, (int, float)) else None,
            int(answer.get("live_elsewhere", 0)),
            bool(answer.get("handed_over", False)),
            answer.get("carry"),
        )

    def state(self, name: str, state: str) -> None:
        """Say what became of a name this worker holds: live, parked, held (ended, its
        sender may come back), free."""
        self.tell("state", name=name, state=state)

    async def owner(self, name: str) -> int | None:
        """Which worker holds the stream ``name`` (None: none)."""
        try:
            answer = await self.ask("owner", name=name)
        except (TransportError, asyncio.TimeoutError):
            return None
        owner = answer.get("worker")
        return owner if isinstance(owner, int) else None

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
        if op == "handoff":
            return await hand_off(receiver.streams, Hello.parse(message["hello"]))
        if op == "views":
            return {"views": receiver.local_views()}
        if op == "metrics":
            from prometheus_client import generate_latest

            from .metrics import registry_for

            return {"text": generate_latest(registry_for(receiver)).decode()}
        if op == "stop":
            receiver.stop_requested()
            return {}
        return {"error": f"unknown request {op!r}"}


async def hand_off(streams: Streams, hello: Hello) -> dict[str, Any]:
    """Another worker has a connection for the stream ``hello`` names: let the stream go
    if the connection is its own sender's (its part is finalised, the newcomer continues
    from the sidecar): ``{"proven": True}``; let the name go if nothing holds it any more
    (``{"proven": False}``); else say why not (``{"refuse": reason}``)."""
    name = hello.stream
    if name in streams.admitting:
        return {"refuse": f"stream name {name!r} is being taken by another connection"}
    stream = await streams.known(name)  # once a finalisation in progress is written
    if stream is not None:
        if not stream.proves(hello):
            return _in_use(name, streams.holder(stream))
        if await streams.let_go(stream):  # (else its last packet came: it ended here)
            await streams.finish(stream, MOVED)
    else:
        ended = streams.ended.get(name)
        if ended is not None and streams.held(name):
            if not ended[1].proves(hello):
                until = ended[0] + streams.config.resume_grace_s
                return _in_use(name, Holder(ended[1].peer, until=until))
            stream = ended[1]
    streams.ended.pop(name, None)  # the name is the other worker's now
    if stream is None:
        return {"proven": False}
    return {"proven": True, "carry": carried(stream)}


def _in_use(name: str, holder: Holder) -> dict[str, Any]:
    now = time.time()
    return {"refuse": holder.reason(name, now), "retry_after_s": holder.retry_after_s(now)}


def carried(stream: Stream) -> dict[str, Any]:
    """What a stream's figures owe to its earlier connections: they go with it to the
    worker that continues it (counters only go up, wherever the stream is)."""
    return {
        "totals": vars(stream.stats()),
        "reconnects": stream.reconnects,
        "first_seen": stream.first_seen,
    }


def carry_over(stream: Stream, carry: dict[str, Any]) -> None:
    """Add what the stream's earlier worker counted (see :func:`carried`)."""
    for name, value in carry.get("totals", {}).items():
        if hasattr(stream.totals, name) and isinstance(value, int):
            setattr(stream.totals, name, getattr(stream.totals, name) + value)
    # its earlier parts are in the sidecar too: the summary must not add them twice
    stream.carried_samples += stream.totals.samples
    stream.reconnects = int(carry.get("reconnects", 0)) + 1
    stream.first_seen = min(stream.first_seen, float(carry.get("first_seen", stream.first_seen)))


def merge_views(views: list[dict[str, Any]], limit_ended: int) -> list[dict[str, Any]]:
    """Every worker's streams as one list: a name once (live over ended: a stream that
    moved to another worker leaves an ended part behind; of ended ones the latest, whichever
    worker answers first), at most ``limit_ended`` ended."""
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
