"""The receiver's web side on one port (docs/PROTOCOL.md §10): which path is what.

A WebSocket upgrade on any path outside ``/api/`` is a sender (micwire.receiver.live); the
rest is HTTP: pages (micwire.receiver.pages), the JSON API, metrics and health
(micwire.receiver.api), recordings (micwire.receiver.downloads), and what stays connected
(live figures and listeners). Every handler decides who may do what with
micwire.receiver.access.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import api, downloads, live, logs, pages
from .access import RECEIVER, is_upgrade, receiver_of

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger("micwire.receiver")


async def root(request: web.Request) -> web.StreamResponse:
    if is_upgrade(request):
        return await live.ingest(request)
    return await pages.page(request, "index.html")


async def anything_else(request: web.Request) -> web.StreamResponse:
    if is_upgrade(request):  # a sender on a path of its own (/stream/<name>)
        return await live.ingest(request)
    raise web.HTTPNotFound()


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
    rx = receiver_of(request)
    if rx.worker is not None:
        response.headers["X-Micwire-Worker"] = str(rx.config.worker)


def build_app(receiver: Receiver) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[by_peer])
    app[RECEIVER] = receiver
    app.on_response_prepare.append(_say_worker)
    router = app.router
    router.add_get("/healthz", api.healthz)
    if receiver.config.web:
        router.add_get("/", root)
        router.add_get("/metrics", api.metrics)
        router.add_get("/send", pages.send_page)
        router.add_get("/login", pages.login_page)
        router.add_post("/login", pages.login)
        router.add_post("/logout", pages.logout)
        router.add_get("/static/{name}", pages.static)
        router.add_get("/recordings/{name}", downloads.recording)
        router.add_get("/api/streams", api.streams_json)
        router.add_patch("/api/streams/{name}", api.patch_stream)
        router.add_patch("/api/outputs/{device}", api.patch_output)
        router.add_get("/api/events", live.events)
        router.add_get("/api/listen/{stream}", live.listen)
    # (?s): a stream name may hold a line break (shown escaped): /stream/a%0Ab is a sender
    router.add_get("/{tail:(?s:.*)}", anything_else)
    return app
