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
import logging
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from ..common.alerts import AlertRules
from ..common.audiofile import RECORDING_FORMATS
from ..common.devices import resolve_device, sounddevice
from ..common.errors import DeviceError, ParameterError, StorageError
from ..common.protocol import CLOSE_GOING_AWAY
from ..common.routing import owner
from ..common.tokens import check_token
from . import logs
from .acceptor import HandedConnections
from .auth import Revocations, Tokens
from .config import (
    ReceiverConfig,
    announce,
    listen_error,
    netloc,
    open_warning,
)
from .control import WorkerLink
from .mixer import Mixers
from .mixstate import MIX_STATE, MixState
from .monitor import Monitor
from .registry import Streams
from .storage import repair_interrupted

log = logging.getLogger("micwire.receiver")
#: In the state directory: the logins ended by "Log out" before their expiry.
REVOKED_LOGINS = "logins-revoked.json"
#: In the run directory of ``--workers N``: the supervisor's control socket.
CONTROL_SOCKET = "control.sock"


#: Loggers a flood of connections could fill (asyncio: "accept() out of system resource").
LIMITED_LOGGERS = ("micwire.receiver", "aiohttp.server", "aiohttp.web", "asyncio")


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
        output_device: int | None = None
        routes: list[tuple[str, int | None]] = []
        if config.play:
            try:
                output_device = resolve_device(sounddevice(), config.output_device, "output")
            except DeviceError as exc:
                if config.output_device is not None:
                    raise
                log.warning("playback off: %s (use --no-play to silence this)", exc)
            for glob, device in config.routes:  # a route to a device not here is an error
                if device.lower() == "none":
                    routes.append((glob, None))
                else:
                    try:
                        found = resolve_device(sounddevice(), device, "output")
                    except DeviceError as exc:
                        raise DeviceError(f"--route {glob}={device}: {exc}") from exc
                    routes.append((glob, found))
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
        #: Every stream's gain, mute, solo and pan (what is heard, not what is recorded).
        self.mix_state = MixState(
            config.state_dir / MIX_STATE if config.state_dir is not None else None
        )
        #: What the receiver shows and says of its streams (page, alerts, stats, counters).
        self.monitor = Monitor(self, config)
        self.streams = Streams(
            config,
            Mixers(output_device, self.mix_state, routes)
            if output_device is not None or any(device is not None for _, device in routes)
            else None,
            self.monitor.finished_stream,
            self.alert_rules,
        )
        self.port: int | None = None
        self.stopping = False
        self.sessions: set[Any] = set()  # open sender WebSockets (closed with 1001 at stop)
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
            tasks.append(asyncio.create_task(self.monitor.tick(stop)))
            webhook = self.monitor.webhook
            if webhook is not None:
                tasks.append(asyncio.create_task(webhook.run()))
            await stop.wait()
            self.stopping = self.streams.stopping = True
            log.info(
                "stopping: closing %d stream(s)%s",
                len(self.streams.live),
                f" (worker {cfg.worker})" if self.worker is not None else "",
            )
        finally:
            if self.monitor.webhook is not None:
                await self.monitor.webhook.flush(2.0)
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
            if self.monitor.webhook is not None:
                await self.monitor.webhook.close()
            self.monitor.close()
            self.mix_state.flush()  # a change not yet written
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
        closing = [
            ws.close(code=CLOSE_GOING_AWAY, message=b"receiver shutting down")
            for ws in self.sessions
        ]
        closing += [client.close(CLOSE_GOING_AWAY) for client in self.monitor.event_clients]
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

    def stop_requested(self) -> None:
        if self._stop is not None:
            self._stop.set()
