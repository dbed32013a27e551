"""The receiver: one aiohttp server on one port for senders (WebSocket, §1-§9 of
docs/PROTOCOL.md), browsers and scripts (§10: monitor page, listeners, metrics).

Senders are served by :class:`~micwire.receiver.connection.Connection`, their streams
kept in :class:`~micwire.receiver.registry.Streams`; the web side is :mod:`micwire.receiver.pages`.
A bad connection is closed with a close code and a reason; it never takes down the
server or another stream.

Why aiohttp and not websockets' ``process_request``: the receiver serves recordings for
download (gigabytes, range requests) and long-lived event streams, which websockets'
HTTP hook cannot (it holds a whole response in memory, under the handshake's timeout).
aiohttp serves both, and its WebSocket reader costs less per packet (measured: 9 µs
against 13 µs per 2 KB message).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from ..common.alerts import AlertRules
from ..common.devices import resolve_device
from ..common.errors import DeviceError, ParameterError, StorageError
from ..common.outcome import Ending, Outcome
from ..common.routing import owner
from . import eventloop, logs
from .acceptor import HandedConnections
from .alerts import Webhook
from .auth import Revocations, Tokens, check_token
from .config import (
    ReceiverConfig,
    announce,
    listen_error,
    netloc,
    open_warning,
)
from .control import WorkerLink, merge_views
from .playback import sounddevice
from .recording import RECORDING_FORMATS
from .registry import Streams
from .storage import repair_interrupted
from .stream import Stream

log = logging.getLogger("micwire.receiver")
#: How often the page's figures are pushed, and the meters' window.
EVENTS_INTERVAL_S = 0.2
#: Ended streams the page keeps listing.
RECENT_ENDED = 20
#: In the state directory: the logins ended by "Log out" before their expiry.
REVOKED_LOGINS = "logins-revoked.json"
#: In the run directory of ``--workers N``: the supervisor's control socket.
CONTROL_SOCKET = "control.sock"


def open_stats_file(path: Path | None) -> IO[str] | None:
    """``--stats-json``: appended to, a line at a time."""
    if path is None:
        return None
    try:
        return open(path, "a", buffering=1)
    except OSError as exc:
        raise StorageError(f"cannot write --stats-json {path}: {exc.strerror or exc}") from exc


#: Loggers a flood of connections could fill (asyncio: "accept() out of system resource").
LIMITED_LOGGERS = ("micwire.receiver", "aiohttp.server", "aiohttp.web", "asyncio")


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


class Receiver:
    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        for name in config.formats:
            if name not in RECORDING_FORMATS:
                raise ParameterError(
                    f"cannot record {name!r}; use one of {', '.join(RECORDING_FORMATS)}"
                )
        extra_tokens = config.listen_token is not None or config.send_token is not None
        if extra_tokens and config.token is None:
            raise ParameterError("--listen-token and --send-token need --token as well")
        check_token(config.token, "--token")
        check_token(config.listen_token, "--listen-token")
        check_token(config.send_token, "--send-token")
        self.tokens = Tokens(config.token, config.listen_token, config.send_token)
        #: Logins ended by "Log out" (kept in the state directory, if there is one).
        self.revocations = Revocations(
            config.state_dir / REVOKED_LOGINS if config.state_dir is not None else None
        )
        if config.record_dir is not None:
            if config.record_dir.exists() and not config.record_dir.is_dir():
                raise StorageError(f"cannot record to {config.record_dir}: it is a file")
            try:
                config.record_dir.mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=config.record_dir)  # noqa: SIM115
                probe.close()
            except OSError as exc:
                raise StorageError(
                    f"cannot record to {config.record_dir}: {exc.strerror or exc}"
                ) from exc
        self._stats_file = open_stats_file(config.stats_json)
        output_device: int | None = None
        if config.play:
            try:
                output_device = resolve_device(sounddevice(), config.output_device, "output")
            except DeviceError as exc:
                if config.output_device is not None:
                    raise
                log.warning("playback off: %s (use --no-play to silence this)", exc)
        self.ssl: ssl.SSLContext | None = None
        if (config.certfile is None) != (config.keyfile is None):
            raise ParameterError("TLS needs both --cert and --key")
        if config.certfile is not None:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                self.ssl.load_cert_chain(config.certfile, config.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load the TLS certificate or key: {exc}") from exc
        self.alert_rules = AlertRules(
            silence_dbfs=config.silence_dbfs, silence_s=config.silence_s, down_s=config.down_s
        )
        self.streams = Streams(config, output_device, self._finished, self.alert_rules)
        #: Streams that have ended, in order (their final figures and outcome).
        self.finished: list[Stream] = []
        self.refusals: Counter[str] = Counter()
        #: Sender connections that ended without any audio, by kind (not listed as streams).
        self.empty_connections: Counter[str] = Counter()
        self.received_bytes = 0
        self.listener_bytes = 0  # sent to listeners that have left
        self.port: int | None = None
        self.stopping = False
        self.sessions: set[Any] = set()  # open sender WebSockets (closed with 1001 at stop)
        self.event_clients: set[Any] = set()
        self.webhook = Webhook(config.webhook) if config.webhook else None
        #: In a worker of ``--workers N``: its line to the supervisor.
        self.worker: WorkerLink | None = None
        if config.run_dir is not None:
            self.worker = WorkerLink(str(config.run_dir / CONTROL_SOCKET), config.worker)
        self._stop: asyncio.Event | None = None
        # an attacker must not be able to fill the log (or the disk it is written to)
        logs.install(*LIMITED_LOGGERS, wide_burst=max(5, config.max_streams))

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        """Serve until ``stop`` is set; then close every stream and finalise its files."""
        from .routes import build_app

        cfg = self.config
        self._stop = stop
        runner = web.AppRunner(
            build_app(self),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            # aiohttp's keep-alive timer also runs from the connection's start until a
            # whole request has arrived: the only bound on half-sent headers it has
            keepalive_timeout=cfg.hello_timeout_s,
        )
        await runner.setup()
        if cfg.record_dir is not None:  # before any connection: nothing else writes there
            await self._repair(cfg.record_dir)
        site: web.TCPSite | None = None
        handed: HandedConnections | None = None
        try:
            if self.worker is not None:  # a worker: its connections come from the supervisor
                assert cfg.handed_fd is not None
                await self.worker.connect(self)
                self.streams.on_live = self._tell_live
                handed = HandedConnections(cfg.handed_fd, runner, self.stop_requested)
                handed.start()
                self.port = cfg.port
            else:
                site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=self.ssl)
                await site.start()
                self.port = self._port_of(site)
        except OSError as exc:
            await runner.cleanup()
            # no host: IPv4 and IPv6 both, and either may be the one that failed
            where = netloc(cfg.host, cfg.port) if cfg.host else f"port {cfg.port} (IPv4 and IPv6)"
            raise listen_error(where, exc) from exc
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.worker is not None:  # the supervisor says where it listens
                self.worker.tell("ready", worker=cfg.worker)
            else:
                self._announce()
            if ready is not None:
                ready(self.port)
            tasks.append(asyncio.create_task(self._tick(stop)))
            if self.webhook is not None:
                tasks.append(asyncio.create_task(self.webhook.run()))
            await stop.wait()
            self.stopping = self.streams.stopping = True
            log.info(
                "stopping: closing %d stream(s)%s",
                len(self.streams.live),
                f" (worker {cfg.worker})" if self.worker is not None else "",
            )
        finally:
            if self.webhook is not None:
                await self.webhook.flush(2.0)
            for task in tasks:
                task.cancel()
            # no new connections: a reconnecting sender finds our successor
            if site is not None:
                await site.stop()
            if handed is not None:
                handed.stop()
            for stream in list(self.streams.parked.values()):
                await self.streams.finish(stream, stream.outcome.stopped())
            await self._close_everything()
            if self.streams.stopping_playback:  # each bounded (playback.CLOSE_TIMEOUT_S)
                await asyncio.wait(self.streams.stopping_playback)
            await runner.cleanup()
            if self.webhook is not None:
                await self.webhook.close()
            if self._stats_file is not None:
                self._stats_file.close()
            logs.report_left_out(*LIMITED_LOGGERS)

    def _tell_live(self, count: int) -> None:
        if self.worker is not None:
            self.worker.tell("live", count=count)

    @staticmethod
    def _port_of(site: web.TCPSite) -> int:
        server: Any = site._server
        # with --port 0 on every interface, IPv4 and IPv6 each get a port of their own:
        # the one said is IPv4's, what other machines most likely use
        ours = sorted(server.sockets, key=lambda s: s.family != socket.AF_INET)
        return int(ours[0].getsockname()[1])

    def _announce(self) -> None:
        cfg = self.config
        assert self.port is not None
        note = "token required" if cfg.token else ""
        senders, page = announce(cfg.host, self.port, self.ssl is not None, note)
        log.info("listening on %s", senders)
        if cfg.web:
            log.info("monitor page: %s", page)
        warning = open_warning(replace(cfg, port=self.port))
        if warning is not None:
            log.warning("%s", warning)

    async def _close_everything(self) -> None:
        """Tell every sender, listener and page the receiver is going (1001), and let the
        senders' handlers finalise their streams; a peer that does not answer within a
        couple of seconds is cut off (a stop never waits on the network for long)."""
        closing = [ws.close(code=1001, message=b"receiver shutting down") for ws in self.sessions]
        closing += [client.close(1001) for client in self.event_clients]
        for stream in self.streams.all():
            for listener in list(stream.listeners):
                listener.end("receiver stopped")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), 2.5)
        for ws in list(self.sessions):  # did not answer: no more waiting
            transport = ws._req.transport if ws._req is not None else None
            if transport is not None:
                transport.abort()
        deadline = time.monotonic() + 10.0  # their handlers finalise the recordings
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _repair(self, directory: Path) -> None:
        """Sidecars a crash left saying "recording" are brought up to date (off the loop);
        a worker's, of the streams it owns (a restarted worker's senders resume from them,
        as after a restart of a receiver)."""
        cfg = self.config

        def owned(name: str) -> bool:
            return owner(name, cfg.workers) == cfg.worker

        mine = owned if cfg.workers > 1 else None
        for path in await asyncio.to_thread(repair_interrupted, directory, mine):
            log.info("%s: the recording was interrupted; its sidecar is up to date now", path.name)

    def note_refusal(self, peer: str, reason: str) -> None:
        self.refusals[_refusal_kind(reason)] += 1
        # limited per reason: a user must see why (bad JSON, a wrong version), not a count
        log.warning("refused %s: %s", peer, reason, extra={"limit_kind": logs.kind_of(reason)})

    async def _finished(self, stream: Stream) -> None:
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

    def stop_requested(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def local_views(self) -> list[dict[str, Any]]:
        """This process's streams as the page shows them."""
        return [stream.view(EVENTS_INTERVAL_S) for stream in self.recent()]

    async def snapshot(self) -> dict[str, Any]:
        """The page's view of every stream (one ``streams`` event): with ``--workers``,
        every worker's."""
        views = self.local_views()
        if self.worker is not None:
            for answer in await self.worker.others("views"):
                views.extend(answer)
            views = merge_views(views, RECENT_ENDED)
        views.sort(key=lambda view: str(view.get("stream")))  # a building's rooms, by name
        return {"type": "streams", "time": round(time.time(), 3), "streams": views}

    def _gather_s(self) -> float:
        """How long the event loop may gather its wake-ups: only while nothing is served
        live (micwire.receiver.eventloop)."""
        live = (
            self.config.play
            or self.event_clients
            or any(stream.listeners for stream in self.streams.all())
        )
        return 0.0 if live else self.config.gather_ms / 1000

    async def _tick(self, stop: asyncio.Event) -> None:
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
