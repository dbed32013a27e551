"""The receiver's pages for people: the monitor page, the guest page (a browser is a
sender), the login form and its cookie, and their static files (docs/PROTOCOL.md §10)."""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from .access import caller_role, receiver_of
from .auth import COOKIE, LOGIN_S, MAY_SEND, MAY_WATCH

if TYPE_CHECKING:
    from .server import Receiver


WEB_DIR = Path(__file__).parent / "web"


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


def _file(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream").split(";")[0],
        charset="utf-8" if path.suffix in (".html", ".js", ".css") else None,
        headers=PAGE_HEADERS,
    )


async def page(request: web.Request, name: str) -> web.StreamResponse:
    if caller_role(request, MAY_WATCH) is None:
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    response = _file(WEB_DIR / name)
    if not receiver_of(request).tokens.required and isinstance(response.body, bytes):
        # no token: nobody logged in, so there is nothing to log out of
        response.body = response.body.replace(b'class="logout"', b'class="logout" hidden')
    return response


async def send_page(request: web.Request) -> web.StreamResponse:
    """The guest page: a browser is a sender. A link may carry a token (``?token=``): it
    is exchanged for the login cookie at once, and the URL shown no longer holds it."""
    rx = receiver_of(request)
    offered = request.query.get("token")
    if offered is not None:
        role = rx.tokens.role_of_token(offered)
        query = {k: v for k, v in request.query.items() if k != "token"}
        target = str(request.rel_url.with_query(query))
        if role in MAY_SEND and rx.tokens.required:
            response = web.HTTPSeeOther(target)
            if caller_role(request, MAY_SEND & MAY_WATCH) is None:  # a host trying the link keeps
                _set_login_cookie(response, rx, role)  # the login that lets them watch
            raise response
        if role not in MAY_SEND:
            rx.monitor.note_refusal(request.remote or "?", "missing or wrong token (guest link)")
            raise web.HTTPSeeOther(f"/login?error=1&next={quote(target, safe='')}")
        raise web.HTTPSeeOther(target)
    if caller_role(request, MAY_SEND) is None:
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
    rx = receiver_of(request)
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
            rx.monitor.note_refusal(request.remote or "?", "missing or wrong token (login)")
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
    rx = receiver_of(request)
    login = rx.tokens.login_of_cookie(request.cookies.get(COOKIE), time.time())
    if login is not None:
        rx.revocations.revoke(login)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response
