"""Who may do what, for one request: the caller's role (a bearer token, or the login
cookie), and a browser's WebSocket from another site refused (micwire.receiver.auth has
the tokens and cookies themselves)."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from aiohttp import web

from .auth import same_origin

if TYPE_CHECKING:
    from .server import Receiver


RECEIVER = web.AppKey("receiver", object)
#: Bounds on what browsers can hold open.


def receiver_of(request: web.Request) -> Receiver:
    return request.app[RECEIVER]  # type: ignore[return-value]


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def caller_role(request: web.Request, allowed: frozenset[str]) -> str | None:
    """The caller's role if it may do what ``allowed`` says, else None. A WebSocket
    authenticated by the login cookie must come from our own page, and one opened by a
    page elsewhere (a browser says so in ``Origin``) is refused even when no token is
    needed: another site must not listen to, or send into, a receiver its visitor can
    reach. Senders and scripts send no ``Origin``."""
    rx = receiver_of(request)
    role, by_cookie = rx.tokens.role(
        request.headers.getall("Authorization", []), request.cookies, rx.revocations.revoked
    )
    if role not in allowed:
        return None
    if is_upgrade(request):
        origin = request.headers.get("Origin")
        if (by_cookie or origin is not None) and not same_origin(origin, request.host):
            rx.monitor.note_refusal(request.remote or "?", "cross-origin WebSocket")
            return None
    return role


def unauthorized(request: web.Request, what: str) -> web.Response:
    receiver_of(request).monitor.note_refusal(
        request.remote or "?", f"missing or wrong token ({what})"
    )
    return web.Response(
        status=HTTPStatus.UNAUTHORIZED,
        text="missing or wrong token\n",
        headers={"WWW-Authenticate": 'Bearer realm="micwire"'},
    )
