"""What stays connected: senders' WebSockets (docs/PROTOCOL.md §1-§9), a page's live
figures (``/api/events``) and listeners (``/api/listen/<stream>``)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from ..common.protocol import CLOSE_GOING_AWAY, max_message_bytes
from .access import caller_role, receiver_of, unauthorized
from .auth import MAY_SEND, MAY_WATCH
from .connection import Connection
from .listeners import Listener, bound_in_flight, bytes_per_s


async def ingest(request: web.Request) -> web.StreamResponse:
    """A sender's WebSocket (docs/PROTOCOL.md §1-§9)."""
    rx = receiver_of(request)
    if caller_role(request, MAY_SEND) is None:
        return unauthorized(request, "sender")
    # no heartbeat: a sender sends audio all the time, and one that stops is closed by its
    # session's idle timeout; aiohttp's heartbeat would re-arm a timer for every packet
    ws = web.WebSocketResponse(max_msg_size=max_message_bytes(), compress=False, timeout=2.0)
    await ws.prepare(request)
    rx.sessions.add(ws)
    try:
        await Connection(rx, ws, request).run()
    finally:
        rx.sessions.discard(ws)
    return ws


MAX_EVENT_CLIENTS = 100


class EventClient:
    """A page's live figures: only the latest message waits (a slow page skips)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._latest: str | None = None
        self._ready = asyncio.Event()

    def push(self, message: str) -> None:
        self._latest = message
        self._ready.set()

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not self.ws.closed:
                await self._ready.wait()
                self._ready.clear()
                if self._latest is not None:
                    message, self._latest = self._latest, None
                    await self.ws.send_str(message)

    async def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code)


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what a browser sends, so pings and the close are handled."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        async for _ in ws:
            pass


async def events(request: web.Request) -> web.StreamResponse:
    rx = receiver_of(request)
    role = caller_role(request, MAY_WATCH)
    if role is None:
        return unauthorized(request, "events")
    if len(rx.monitor.event_clients) >= MAX_EVENT_CLIENTS:
        raise web.HTTPServiceUnavailable(text="too many pages open\n")
    ws = web.WebSocketResponse(compress=False, heartbeat=20.0, timeout=2.0)
    await ws.prepare(request)
    with contextlib.suppress(ConnectionError, RuntimeError):  # what the page may do
        await ws.send_str(json.dumps({"type": "hello", "role": role}))
    client = EventClient(ws)
    rx.monitor.event_clients.add(client)
    client.push(json.dumps(await rx.monitor.snapshot()))
    sender = asyncio.create_task(client.run())
    try:
        await _drain(ws)
    finally:
        rx.monitor.event_clients.discard(client)
        sender.cancel()
    return ws


async def listen(request: web.Request) -> web.StreamResponse:
    """A listener (with ``--workers N`` its connection reaches the worker of the stream:
    the supervisor routes ``/api/listen/<name>`` by the name)."""
    if caller_role(request, MAY_WATCH) is None:
        return unauthorized(request, "listen")
    rx = receiver_of(request)
    name = request.match_info["stream"]
    stream = rx.streams.live.get(name) or rx.streams.parked.get(name)
    if stream is None:
        raise web.HTTPNotFound(text=f"no stream {name!r}\n")
    if len(stream.listeners) >= rx.config.max_listeners:
        raise web.HTTPServiceUnavailable(
            text=f"too many listeners ({rx.config.max_listeners}: --max-listeners)\n"
        )
    pcm = request.query.get("format") == "pcm"
    p = stream.params
    codec = "pcm" if pcm else p.codec
    limit = bound_in_flight(
        request.transport, bytes_per_s(codec, p.rate_hz, p.channels, p.frame_ms, p.bitrate)
    )
    ws = web.WebSocketResponse(compress=False, heartbeat=20.0, timeout=2.0, writer_limit=limit)
    await ws.prepare(request)
    listener = Listener(ws, name, pcm, p.rate_hz, rx.config.listener_stalled_s)
    stream.listeners.add(listener)
    reader = asyncio.create_task(_drain(ws))
    reader.add_done_callback(lambda _: listener.stop())
    try:
        await listener.run()
    finally:
        stream.listeners.remove(listener)
        rx.monitor.listener_bytes += listener.sent_bytes  # the receiver's total outlives the stream
        reader.cancel()
    return ws
