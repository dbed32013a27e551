"""The receiver: a WebSocket server, one :class:`~micwire.receiver.session.Session` per
connection, and the streams they carry (:mod:`micwire.receiver.streams`).

A bad connection is closed with a close code and a reason; it never takes down the
server or another stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import IO

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from micwire.common.devices import resolve_device
from micwire.common.errors import DeviceError, ParameterError, StorageError, TransportError
from micwire.common.protocol import max_message_bytes
from micwire.receiver import logs
from micwire.receiver.auth import bearer_token, token_matches
from micwire.receiver.config import ReceiverConfig
from micwire.receiver.playback import sounddevice
from micwire.receiver.recording import RECORDING_FORMATS
from micwire.receiver.session import Session
from micwire.receiver.streams import Stream, Streams

log = logging.getLogger("micwire.receiver")


def _refusal_kind(reason: str) -> str:
    """A short label for counting refusals by kind."""
    for kind in ("full", "in use", "no hello", "token", "protocol version"):
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
        if config.record_dir is not None:
            try:
                config.record_dir.mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=config.record_dir)  # noqa: SIM115
                probe.close()
            except OSError as exc:
                raise StorageError(
                    f"cannot record to {config.record_dir}: {exc.strerror or exc}"
                ) from exc
        self._stats_file: IO[str] | None = None
        if config.stats_json is not None:
            try:
                self._stats_file = open(config.stats_json, "a", buffering=1)  # noqa: SIM115
            except OSError as exc:
                raise StorageError(
                    f"cannot write --stats-json {config.stats_json}: {exc.strerror or exc}"
                ) from exc
        output_device: int | None = None
        if config.play:
            try:
                output_device = resolve_device(sounddevice(), config.output_device, "output")
            except DeviceError as exc:
                if config.output_device is not None:
                    raise
                log.warning("playback off: %s (use --no-play to silence this)", exc)
        self._ssl: ssl.SSLContext | None = None
        if (config.certfile is None) != (config.keyfile is None):
            raise ParameterError("TLS needs both --cert and --key")
        if config.certfile is not None:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                self._ssl.load_cert_chain(config.certfile, config.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ParameterError(f"cannot load the TLS certificate or key: {exc}") from exc
        self.streams = Streams(config, output_device, self._finished)
        #: Streams that have ended, in order (their final figures and outcome).
        self.finished: list[Stream] = []
        self.refusals: Counter[str] = Counter()
        self.port: int | None = None
        # an attacker must not be able to fill the log (or the disk it is written to)
        logs.install("micwire.receiver", "websockets.server")

    async def run(self, stop: asyncio.Event, ready: Callable[[int], None] | None = None) -> None:
        """Serve until ``stop`` is set; then close every stream and finalise its files."""
        cfg = self.config
        try:
            server_cm = serve(
                self._handle,
                cfg.host,
                cfg.port,
                ssl=self._ssl,
                process_request=self._authorize,
                compression=None,
                max_size=max_message_bytes(),
                max_queue=64,
                open_timeout=cfg.hello_timeout_s,
                server_header="micwire",
            )
            server = await server_cm.__aenter__()
        except OSError as exc:
            where = f"{cfg.host or '0.0.0.0'}:{cfg.port}"
            if exc.errno == errno.EADDRINUSE:
                raise TransportError(
                    f"cannot listen on {where}: the port is in use (another receiver?); "
                    "pick another --port"
                ) from exc
            raise TransportError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        try:
            self.port = int(server.sockets[0].getsockname()[1])
            scheme = "wss" if self._ssl else "ws"
            log.info(
                "listening on %s://%s:%d%s",
                scheme,
                cfg.host or "0.0.0.0",
                self.port,
                " (token required)" if cfg.token else "",
            )
            if ready is not None:
                ready(self.port)
            stats = asyncio.create_task(self._report_stats(stop))
            await stop.wait()
            self.streams.stopping = True
            await stats
            log.info("stopping: closing %d stream(s)", len(self.streams.live))
        finally:
            # closes every connection (1001) and waits for their handlers
            await server_cm.__aexit__(None, None, None)
            for stream in list(self.streams.parked.values()):
                await self.streams.finish(stream, f"{stream.outcome}; the receiver stopped")
            if self._stats_file is not None:
                self._stats_file.close()

    def _authorize(self, ws: ServerConnection, request: Request) -> Response | None:
        """Answer HTTP 401 before the WebSocket upgrade unless the token matches."""
        token = self.config.token
        if token is None or token_matches(bearer_token(request.headers), token):
            return None
        self.note_refusal(ws.remote_address[0], "missing or wrong token")
        response = ws.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="micwire"'
        return response

    def note_refusal(self, peer: str, reason: str) -> None:
        self.refusals[_refusal_kind(reason)] += 1
        log.warning("refused %s: %s", peer, reason)

    async def _handle(self, ws: ServerConnection) -> None:
        await Session(self, ws).run()

    async def _finished(self, stream: Stream) -> None:
        self.finished.append(stream)
        del self.finished[:-1000]  # bounded: the latest are what views show
        log.info("%s", stream.summary())

    async def _report_stats(self, stop: asyncio.Event) -> None:
        """Every interval: the live figures of every stream, as JSON lines to
        ``--stats-json`` and to the ``on_stats`` callback (the terminal display)."""
        out, show = self._stats_file, self.config.on_stats
        if out is None and show is None:
            return
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.stats_interval_s)
            lines = [stream.figures().line() for stream in self.streams.all()]
            if out is not None:
                try:
                    out.writelines(json.dumps(line) + "\n" for line in lines)
                except OSError as exc:
                    log.error("cannot write --stats-json: %s", exc.strerror or exc)
            if show is not None:
                show(lines)
