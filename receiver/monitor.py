"""What the receiver shows and says of its streams: the monitor page's live figures, the
alerts (log and webhook), the stats lines (``--stats-json``, the terminal table), and the
counters of what it refused; the streams that have ended, for the views.

Five times a second the figures go to every open page (``/api/events``); once a second
the alert rules run, the stats lines are written and stalled listeners are cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..common.errors import StorageError
from ..common.outcome import Ending, Outcome
from . import eventloop, logs
from .alerts import Webhook
from .config import ReceiverConfig
from .control import merge_views
from .stream import Stream
from .views import view_of

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")
#: How often the page's figures are pushed, and the meters' window.
EVENTS_INTERVAL_S = 0.2
#: Ended streams the page keeps listing.
RECENT_ENDED = 20


def open_stats_file(path: Path | None) -> IO[str] | None:
    """``--stats-json``: appended to, a line at a time."""
    if path is None:
        return None
    try:
        return open(path, "a", buffering=1)
    except OSError as exc:
        raise StorageError(f"cannot write --stats-json {path}: {exc.strerror or exc}") from exc


def _empty_kind(outcome: Outcome) -> str:
    """A short label for counting connections that ended without audio."""
    if outcome.ending is Ending.REFUSED:
        return "malformed"
    if outcome.text.startswith("no audio"):
        return "idle"
    if outcome.ended_well:
        return "ended"
    return "left"


def _refusal_kind(reason: str) -> str:
    """A short label for counting refusals by kind."""
    for kind in ("full", "in use", "no hello", "token", "protocol version", "origin"):
        if kind in reason:
            return kind
    return "bad hello"


class Monitor:
    def __init__(self, receiver: Receiver, config: ReceiverConfig) -> None:
        self.receiver = receiver
        self.config = config
        self._stats_file = open_stats_file(config.stats_json)
        #: Streams that have ended, in order (their final figures and outcome).
        self.finished: list[Stream] = []
        self.refusals: Counter[str] = Counter()
        #: Sender connections that ended without any audio, by kind (not listed as streams).
        self.empty_connections: Counter[str] = Counter()
        self.received_bytes = 0
        self.listener_bytes = 0  # sent to listeners that have left
        #: Open pages' live figures (``/api/events``).
        self.event_clients: set[Any] = set()
        self.webhook = Webhook(config.webhook) if config.webhook else None

    @property
    def streams(self) -> Any:
        return self.receiver.streams

    def close(self) -> None:
        if self._stats_file is not None:
            self._stats_file.close()

    def note_refusal(self, peer: str, reason: str) -> None:
        self.refusals[_refusal_kind(reason)] += 1
        # limited per reason: a user must see why (bad JSON, a wrong version), not a count
        log.warning("refused %s: %s", peer, reason, extra={"limit_kind": logs.kind_of(reason)})

    async def finished_stream(self, stream: Stream) -> None:
        """A stream ended: listed (if people saw it), its listeners told, said in the log."""
        if not stream.shown:  # a connection that never sent audio: counted, not listed
            self.empty_connections[_empty_kind(stream.outcome)] += 1
            stream.listeners.end(stream.outcome.text)
            log.info(
                "connection from %s for stream %r ended without audio: %s",
                stream.peer,
                stream.name,
                stream.outcome,
            )
            return
        self.finished.append(stream)
        del self.finished[:-1000]  # bounded: the latest are what views show
        stream.listeners.end(stream.outcome.text)
        log.info("%s", stream.summary())

    def _alerts(self, stream: Stream, changes: list[Any], now: float) -> None:
        """Log alert changes and send them to the webhook."""
        with logs.about(stream.peer, stream.log_key):  # its lines count against it
            for change in changes:
                verb = "raised" if change.active else "cleared"
                log.warning(
                    "stream %r: alert %s %s: %s", stream.name, change.kind, verb, change.message
                )
                if self.webhook is not None:
                    self.webhook.post(change.event(now))

    def recent(self) -> list[Stream]:
        """Every stream the page shows: live, reconnecting, and recently ended."""
        current = self.streams.shown()
        shown = {s.name for s in current}
        ended: list[Stream] = []
        for stream in reversed(self.finished):
            if stream.ended_before:  # the stream it confirmed is what the page shows
                continue
            if stream.name not in shown and len(ended) < RECENT_ENDED:
                shown.add(stream.name)
                ended.append(stream)
        return [*current, *ended]

    def local_views(self) -> list[dict[str, Any]]:
        """This process's streams as the page shows them."""
        mix = self.receiver.mix_state
        return [
            {
                **view_of(stream, EVENTS_INTERVAL_S).to_json(),
                "mix": mix.settings(stream.name).to_json(),
            }
            for stream in self.recent()
        ]

    async def snapshot(self) -> dict[str, Any]:
        """The page's view of every stream (one ``streams`` event): with ``--workers``,
        every worker's."""
        views = self.local_views()
        worker = self.receiver.worker
        if worker is not None:
            for answer in await worker.others("views"):
                views.extend(answer)
            views = merge_views(views, RECENT_ENDED)
        views.sort(key=lambda view: str(view.get("stream")))  # a building's rooms, by name
        mixers = self.streams.mixers
        return {
            "type": "streams",
            "time": round(time.time(), 3),
            "streams": views,
            # each output device's mix: the page's master strips
            "outputs": mixers.views() if mixers is not None else [],
        }

    def _gather_s(self) -> float:
        """How long the event loop may gather its wake-ups: only while nothing is served
        live (micwire.receiver.eventloop)."""
        live = (
            self.config.play
            or self.event_clients
            or any(stream.listeners for stream in self.streams.all())
        )
        return 0.0 if live else self.config.gather_ms / 1000

    async def tick(self, stop: asyncio.Event) -> None:
        """Five times a second: push the figures to the pages. Every second: alerts, the
        stats lines (``--stats-json``, terminal display), stalled listeners."""
        out, show = self._stats_file, self.config.on_stats
        next_second = time.monotonic() + self.config.stats_interval_s
        while not stop.is_set():
            eventloop.gather_wakeups(self._gather_s())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), EVENTS_INTERVAL_S)
            if self.event_clients:
                message = json.dumps(await self.snapshot())
                for client in list(self.event_clients):
                    client.push(message)
            if time.monotonic() < next_second:
                continue
            next_second += self.config.stats_interval_s
            now = time.time()
            if self.streams.mixers is not None:  # a device that stalled or went away
                self.streams.mixers.check(time.monotonic())
            back = {s.name for s in self.streams.shown()}
            for stream in self.finished:  # a room that is back: its old stream is not down
                alerts = stream.meters.alerts
                if stream.name in back and alerts.active:
                    self._alerts(stream, alerts.clear_all(), now)
            for stream in self.recent():
                self._alerts(stream, stream.check_alerts(now), now)
                for listener in list(stream.listeners):
                    if listener.stalled:
                        listener.abort("not reading")
            if out is None and show is None:
                continue
            lines = [stream.figures().line() for stream in self.streams.shown()]
            if out is not None:
                try:
                    out.writelines(json.dumps(line) + "\n" for line in lines)
                except OSError as exc:
                    log.error("cannot write --stats-json: %s", exc.strerror or exc)
            if show is not None:
                show(lines)
