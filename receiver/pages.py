"""The receiver's web side (docs/PROTOCOL.md §10): senders' WebSockets, the monitor page,
listeners, live figures, metrics, health, recordings and login, all on one port.

Routing: a WebSocket upgrade on any path outside ``/api/`` is a sender; the rest is
HTTP. Every handler decides who may do what with :class:`~micwire.receiver.auth.Tokens`:
a sender needs a token that may send, a viewer one that may watch; a browser's WebSocket
that rides on the login cookie must come from our own page (``Origin``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import stat
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..common.protocol import max_message_bytes
from . import logs
from .auth import COOKIE, LOGIN_S, MAY_SEND, MAY_WATCH, same_origin
from .connection import Connection
from .control import merge_metrics
from .listeners import Listener, bound_in_flight, bytes_per_s
from .metrics import registry_for

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")
WEB_DIR = Path(__file__).parent / "web"
RECEIVER = web.AppKey("receiver", object)
#: Bounds on what browsers can hold open.
MAX_EVENT_CLIENTS = 100
RECORDING_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".json")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
#: The pages load nothing from elsewhere and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _receiver(request: web.Request) -> Receiver:
    return request.app[RECEIVER]  # type: ignore[return-value]


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _role(request: web.Request, allowed: frozenset[str]) -> str | None:
    """The caller's role if it may do what ``allowed`` says, else None. A WebSocket
    authenticated by the login cookie must come from our own page, and one opened by a
    page elsewhere (a browser says so in ``Origin``) is refused even when no token is
    needed: another site must not listen to, or send into, a receiver its visitor can
    reach. Senders and scripts send no ``Origin``."""
    rx = _receiver(request)
    role, by_cookie = rx.tokens.role(
        request.headers.getall("Authorization", []), request.cookies, rx.revocations.revoked
    )
    if role not in allowed:
        return None
    if _is_upgrade(request):
        origin = request.headers.get("Origin")
        if (by_cookie or origin is not None) and not same_origin(origin, request.host):
            rx.note_refusal(request.remote or "?", "cross-origin WebSocket")
            return None
    return role


def _unauthorized(request: web.Request, what: str) -> web.Response:
    _receiver(request).note_refusal(request.remote or "?", f"missing or wrong token ({what})")
    return web.Response(
        status=HTTPStatus.UNAUTHORIZED,
        text="missing or wrong token\n",
        headers={"WWW-Authenticate": 'Bearer realm="micwire"'},
    )


def _file(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream").split(";")[0],
        charset="utf-8" if path.suffix in (".html", ".js", ".css") else None,
        headers=PAGE_HEADERS,
    )


# --- senders -----------------------------------------------------------------------------
async def ingest(request: web.Request) -> web.StreamResponse:
    """A sender's WebSocket (docs/PROTOCOL.md §1-§9)."""
    rx = _receiver(request)
    if _role(request, MAY_SEND) is None:
        return _unauthorized(request, "sender")
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


async def root(request: web.Request) -> web.StreamResponse:
    if _is_upgrade(request):
        return await ingest(request)
    return await page(request, "index.html")


async def anything_else(request: web.Request) -> web.StreamResponse:
    if _is_upgrade(request):  # a load balancer may route senders on a path of its own
        return await ingest(request)
    raise web.HTTPNotFound()


# --- pages ---------------------------------------------------------------------------------
async def page(request: web.Request, name: str) -> web.StreamResponse:
    if _role(request, MAY_WATCH) is None:
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    response = _file(WEB_DIR / name)
    if not _receiver(request).tokens.required and isinstance(response.body, bytes):
        # no token: nobody logged in, so there is nothing to log out of
        response.body = response.body.replace(b'class="logout"', b'class="logout" hidden')
    return response


async def send_page(request: web.Request) -> web.StreamResponse:
    """The guest page: a browser is a sender. A link may carry a token (``?token=``): it
    is exchanged for the login cookie at once, and the URL shown no longer holds it."""
    rx = _receiver(request)
    offered = request.query.get("token")
    if offered is not None:
        role = rx.tokens.role_of_token(offered)
        query = {k: v for k, v in request.query.items() if k != "token"}
        target = str(request.rel_url.with_query(query))
        if role in MAY_SEND and rx.tokens.required:
            response = web.HTTPSeeOther(target)
            if _role(request, MAY_SEND & MAY_WATCH) is None:  # a host trying the link keeps
                _set_login_cookie(response, rx, role)  # the login that lets them watch
            raise response
        if role not in MAY_SEND:
            rx.note_refusal(request.remote or "?", "missing or wrong token (guest link)")
            raise web.HTTPSeeOther(f"/login?error=1&next={quote(target, safe='')}")
        raise web.HTTPSeeOther(target)
    if _role(request, MAY_SEND) is None:
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    return _file(WEB_DIR / "send.html")


def _set_login_cookie(response: web.StreamResponse, rx: Receiver, role: str) -> None:
    response.set_cookie(
        COOKIE,
        rx.tokens.new_login(role, time.time()),  # each login its own, to be logged out alone
        httponly=True,
        samesite="Strict",
        secure=rx.ssl is not None,
        path="/",
        max_age=LOGIN_S,
    )


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = WEB_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    return _file(path)


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no open redirect to another one)."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()  # browsers drop tabs and newlines: "/\t/evil" is "//evil"
        and " " not in value
    ):
        return value
    return "/"


async def login_page(request: web.Request) -> web.StreamResponse:
    return _file(WEB_DIR / "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    rx = _receiver(request)
    try:  # a body sent a byte now and then must not hold the connection for ever
        async with asyncio.timeout(rx.config.hello_timeout_s):
            form = await request.post()
    except TimeoutError:
        late = web.Response(status=HTTPStatus.REQUEST_TIMEOUT, text="the form came too slowly")
        await late.prepare(request)
        await late.write_eof()
        request.protocol.force_close()  # not aiohttp's lingering wait for the rest of it
        return late
    next_page = _safe_next(str(form.get("next") or request.query.get("next") or "/"))
    offered = form.get("token")
    role = rx.tokens.role_of_token(str(offered) if offered is not None else None)
    if role is None:
        role, _ = rx.tokens.role(request.headers.getall("Authorization", []), {})
    if role is None or not rx.tokens.required:
        if role is None:
            rx.note_refusal(request.remote or "?", "missing or wrong token (login)")
            raise web.HTTPSeeOther(f"/login?error=1&next={quote(next_page, safe='')}")
        raise web.HTTPSeeOther(next_page)
    if role not in MAY_WATCH:  # a send-only token goes to the guest page
        next_page = "/send" if not next_page.startswith("/send") else next_page
    response = web.HTTPSeeOther(next_page)
    _set_login_cookie(response, rx, role)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End this login: its cookie stops working here and on every receiver sharing the
    state directory, even if someone copied it (not only in this browser)."""
    rx = _receiver(request)
    login = rx.tokens.login_of_cookie(request.cookies.get(COOKIE), time.time())
    if login is not None:
        rx.revocations.revoke(login)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


# --- scripts -------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.StreamResponse:
    rx = _receiver(request)
    status = HTTPStatus.SERVICE_UNAVAILABLE if rx.stopping else HTTPStatus.OK
    body = {
        "status": "stopping" if rx.stopping else "ok",
        "live": len(rx.streams.live),
        "parked": len(rx.streams.parked),
    }
    if rx.worker is not None:  # with --workers: this worker's streams, and which it is
        body["worker"] = rx.config.worker
    return web.json_response(body, status=status)


async def metrics(request: web.Request) -> web.StreamResponse:
    if _role(request, MAY_WATCH) is None:
        return _unauthorized(request, "metrics")
    rx = _receiver(request)
    body = generate_latest(registry_for(rx))
    if rx.worker is not None:  # every worker's figures, as one receiver's
        body = merge_metrics([body.decode(), *await rx.worker.others("metrics")])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def streams_json(request: web.Request) -> web.StreamResponse:
    if _role(request, MAY_WATCH) is None:
        return _unauthorized(request, "api")
    return web.json_response(await _receiver(request).snapshot())


async def recording(request: web.Request) -> web.StreamResponse:
    """A recording or sidecar, seekable (aiohttp answers range requests)."""
    if _role(request, MAY_WATCH) is None:
        return _unauthorized(request, "recording")
    directory = _receiver(request).config.record_dir
    name = request.match_info["name"]
    if (
        directory is None
        or "/" in name
        or name.startswith(".")
        or not name.endswith(RECORDING_SUFFIXES)
    ):
        raise web.HTTPNotFound()
    path = _own_file(directory, name)
    if path is None:
        raise web.HTTPNotFound()
    if re.fullmatch(r"bytes=\s*-0+\s*", request.headers.get(hdrs.RANGE, ""), re.IGNORECASE):
        # a suffix of no bytes cannot be satisfied (RFC 9110 14.1.1); aiohttp would send
        # the whole file as if it were one
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={hdrs.CONTENT_RANGE: f"bytes */{path.stat().st_size}"}
        )
    return web.FileResponse(
        path, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}
    )


def _own_file(directory: Path, name: str) -> Path | None:
    """A regular file in the record directory itself, or None: never a symlink (a
    ``link.wav`` pointing elsewhere would serve any file the receiver can read), nor
    anything whose real path leaves the directory."""
    path = directory / name
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.parent == directory.resolve() else None


# --- live ----------------------------------------------------------------------------------
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

    async def close(self, code: int = 1001) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code)


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what a browser sends, so pings and the close are handled."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        async for _ in ws:
            pass


async def events(request: web.Request) -> web.StreamResponse:
    rx = _receiver(request)
    if _role(request, MAY_WATCH) is None:
        return _unauthorized(request, "events")
    if len(rx.event_clients) >= MAX_EVENT_CLIENTS:
        raise web.HTTPServiceUnavailable(text="too many pages open\n")
    ws = web.WebSocketResponse(compress=False, heartbeat=20.0, timeout=2.0)
    await ws.prepare(request)
    client = EventClient(ws)
    rx.event_clients.add(client)
    client.push(json.dumps(await rx.snapshot()))
    sender = asyncio.create_task(client.run())
    try:
        await _drain(ws)
    finally:
        rx.event_clients.discard(client)
        sender.cancel()
    return ws


async def listen(request: web.Request) -> web.StreamResponse:
    """A listener (with ``--workers N`` its connection reaches the worker of the stream:
    the supervisor routes ``/api/listen/<name>`` by the name)."""
    if _role(request, MAY_WATCH) is None:
        return _unauthorized(request, "listen")
    rx = _receiver(request)
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
        rx.listener_bytes += listener.sent_bytes  # the receiver's total outlives the stream
        reader.cancel()
    return ws


@web.middleware
async def by_peer(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every line logged while serving a request is counted against its peer's address
    (micwire.receiver.logs): one address cannot flood the log nor silence another's. A peer
    gone before its answer is no error worth a traceback."""
    logs.PEER.set(request.remote or "")
    try:
        response: web.StreamResponse = await handler(request)
    except ConnectionResetError:  # gone before the answer (e.g. mid WebSocket upgrade)
        log.debug("%s hung up before %s was answered", request.remote, request.path)
        return web.Response(status=HTTPStatus.BAD_REQUEST)  # nobody is there to read it
    return response


async def _say_worker(request: web.Request, response: web.StreamResponse) -> None:
    """With ``--workers N``: which worker answered (``X-Micwire-Worker``), for an operator
    (or a test) looking at one of them."""
    rx = _receiver(request)
    if rx.worker is not None:
        response.headers["X-Micwire-Worker"] = str(rx.config.worker)


def build_app(receiver: Receiver) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[by_peer])
    app[RECEIVER] = receiver
    app.on_response_prepare.append(_say_worker)
    router = app.router
    router.add_get("/healthz", healthz)
    if receiver.config.web:
        router.add_get("/", root)
        router.add_get("/metrics", metrics)
        router.add_get("/send", send_page)
        router.add_get("/login", login_page)
        router.add_post("/login", login)
        router.add_post("/logout", logout)
        router.add_get("/static/{name}", static)
        router.add_get("/recordings/{name}", recording)
        router.add_get("/api/streams", streams_json)
        router.add_get("/api/events", events)
        router.add_get("/api/listen/{stream}", listen)
    router.add_get("/{tail:.*}", anything_else)
    return app
