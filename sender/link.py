"""One connection to the receiver: open it, say hello, send, read what the receiver says.

Every failure to connect becomes one :class:`~micwire.common.errors.TransportError` with a
sentence a person can act on. Once the hello is accepted, :class:`Link` hands each
message from the receiver (acknowledgements, the final ``done``) and the end of the
connection to its owner (sender/delivery.py), which feeds them to the connection protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from ..common.connection.sender import closed_message, final_close
from ..common.errors import (
    ParameterError,
    ProtocolError,
    RefusedError,
    TransportError,
    UnreachableError,
)
from ..common.protocol import (
    CLOSE_REFUSED,
    CLOSE_TRY_AGAIN,
    Accept,
    Ack,
    Done,
    Hello,
    Ping,
    Pong,
    Refuse,
    parse_reply,
)
from ..common.routing import stream_url
from .config import SenderConfig
from .options import WRITE_LIMIT, connect_options, send_buffer_bytes

log = logging.getLogger("micwire.sender")


def close_words(exc: ConnectionClosed) -> str:
    """How a connection ended, in words (common/connection/sender.py says it)."""
    return closed_message(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "")


def _is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_about_plain_token(config: SenderConfig) -> None:
    """A token sent over ws:// to another machine can be read by anyone on the way."""
    parts = urlsplit(config.url)
    if config.token and parts.scheme == "ws" and not _is_local(parts.hostname or ""):
        log.warning(
            "sending the token unencrypted to %s: anyone on the network can read it; "
            "use wss:// (micwire receive --cert/--key)",
            parts.hostname,
        )


#: HTTP statuses of a connection attempt that may go away by themselves: a proxy with no
#: receiver behind it yet (502, 503, 504), a busy server (429), a slow request (408).
PASSING_STATUSES = (408, 429)


def _passing(status: int) -> bool:
    return status in PASSING_STATUSES or 500 <= status <= 599


def _why(exc: BaseException) -> str:
    """An OS error in a few words: "Connection refused", not "[Errno 111] Connect call
    failed ('127.0.0.1', 9)"."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer"
    text = getattr(exc, "strerror", None) or str(exc) or "no answer"
    # a name with several addresses: "Multiple exceptions: [Errno 111] ..., [Errno 111] ..."
    codes = set(re.findall(r"\[Errno (\d+)\]", text))
    return os.strerror(int(codes.pop())) if len(codes) == 1 else text


async def open_connection(config: SenderConfig) -> ClientConnection:
    """Open a connection, turning every failure into one actionable TransportError; its
    ``retry`` says whether trying again later may help (nothing is listening there yet)
    or only a person can fix it (bad token, untrusted certificate, TLS on one side)."""
    url = config.url
    try:
        ws = await connect(stream_url(url, config.name), **connect_options(config))
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes(config))
        return ws
    except ssl.SSLCertVerificationError as exc:
        raise TransportError(
            f"the receiver at {url} has a TLS certificate this machine does not trust "
            f"({exc.verify_message}); pass its CA with --cafile"
        ) from exc
    except (InvalidURI, ValueError) as exc:  # after ssl: its errors are ValueErrors too
        raise ParameterError(
            f"bad receiver URL {url!r}: use ws://HOST:PORT or wss://HOST:PORT"
        ) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == HTTPStatus.UNAUTHORIZED:
            raise TransportError(
                f"the receiver at {url} wants a valid token (HTTP 401): "
                "pass --token or set MICWIRE_TOKEN"
            ) from exc
        message = f"the receiver at {url} rejected the connection: {exc}"
        if _passing(status):
            raise UnreachableError(message, f"HTTP {status}") from exc
        raise TransportError(message) from exc
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
        # the connection went during the TLS handshake: a receiver (re)starting, a network
        # dropping, as for any connection that goes
        raise UnreachableError(
            f"the connection to {url} closed during the TLS handshake ({exc})",
            "closed during the TLS handshake",
        ) from exc
    except ssl.SSLError as exc:
        hint = "; is it ws:// (no TLS)?" if url.startswith("wss://") else ""
        raise TransportError(f"TLS with the receiver at {url} failed ({exc}){hint}") from exc
    except (OSError, asyncio.TimeoutError) as exc:
        why = _why(exc)
        hint = (
            "; is it ws:// (no TLS)?"
            if url.startswith("wss://") and isinstance(exc, asyncio.TimeoutError)
            else "; is `micwire receive` running there?"
        )
        raise UnreachableError(f"cannot reach the receiver at {url} ({why}){hint}", why) from exc
    except ConnectionClosed as exc:  # a proxy that accepted, then closed during the upgrade
        raise UnreachableError(
            f"the connection to {url} closed during the handshake", "closed during the handshake"
        ) from exc
    except InvalidHandshake as exc:
        hint = "; is it wss:// (TLS)?" if url.startswith("ws://") else ""
        raise TransportError(f"the receiver at {url} rejected the connection: {exc}{hint}") from exc


#: A version 1 receiver sends nothing after its accept (no acknowledgements to watch): it is
#: pinged this often, and given as long to answer.
PING_INTERVAL_S = 20.0


class Link:
    """An open connection whose hello was accepted: it sends, and hands what the receiver
    says (and how the connection ended) to ``on_reply`` / ``on_closed``. Whether the link is
    alive, and what to do about it, is the connection protocol's to decide
    (common/connection/sender.py)."""

    def __init__(
        self,
        ws: ClientConnection,
        accept: Accept,
        on_reply: Callable[[Ack | Done | None], None],
        on_closed: Callable[[int | None, str], None],
    ) -> None:
        self.ws = ws
        self.accept = accept
        #: Each message from the receiver after the accept (None: one it cannot parse).
        self.on_reply = on_reply
        #: The connection ended: its close code (None: no close frame) and reason.
        self.on_closed = on_closed
        self._reader = asyncio.create_task(self._read())
        self._pinger: asyncio.Task[None] | None = None
        if accept.version < 2:  # pings, as websockets' keepalive would
            self._pinger = asyncio.create_task(self._ping())

    @classmethod
    async def open(
        cls,
        config: SenderConfig,
        hello: Callable[[], Hello],
        on_reply: Callable[[Ack | Done | None], None],
        on_closed: Callable[[int | None, str], None],
    ) -> Link:
        """Connect, then say hello (made once connected: its clock fields tell the receiver
        how much audio the sender holds right now, which bounds what it may send)."""
        ws = await open_connection(config)
        try:
            await ws.send(hello().serialize())
            text = await asyncio.wait_for(ws.recv(), config.reply_timeout_s)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code in (CLOSE_REFUSED, CLOSE_TRY_AGAIN):
                reason = exc.rcvd.reason if exc.rcvd else ""
                raise RefusedError(reason or "no reason given", code == CLOSE_TRY_AGAIN) from exc
            # closed before it answered (a receiver shutting down, 1001): as for any
            # connection that goes, unless it said retrying cannot help
            raise TransportError(close_words(exc), retry=not final_close(code)) from exc
        except asyncio.TimeoutError as exc:
            ws.transport.abort()
            raise TransportError("the receiver did not answer the hello", retry=True) from exc
        try:
            reply = parse_reply(text)
        except ProtocolError as exc:
            ws.transport.abort()
            raise TransportError(f"the receiver sent a bad reply: {exc}") from exc
        if isinstance(reply, Refuse):
            with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 2.0)
            raise RefusedError(reply.reason, reply.retry, reply.retry_after_s)
        if not isinstance(reply, Accept):
            ws.transport.abort()
            raise TransportError(f"the receiver answered the hello with {reply.TYPE!r}")
        return cls(ws, reply, on_reply, on_closed)

    async def _read(self) -> None:
        """Acknowledgements and the final confirmation; pings are answered by websockets
        as long as messages are read. Then how the connection ended."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                try:
                    reply = parse_reply(message)
                except ProtocolError as exc:
                    log.debug("ignoring a message from the receiver: %s", exc)
                    self.on_reply(None)
                    continue
                if isinstance(reply, Ping):  # at once: its times measure this clock
                    self._pong(reply)
                self.on_reply(reply if isinstance(reply, (Ack, Done)) else None)
        await self.ws.wait_closed()
        received = self.ws.protocol.close_rcvd
        if received is None:
            self.on_closed(None, "")
        else:
            self.on_closed(received.code, received.reason)

    async def _ping(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while not self._reader.done():
                await asyncio.sleep(PING_INTERVAL_S)
                pong = await self.ws.ping()
                try:
                    await asyncio.wait_for(pong, PING_INTERVAL_S)
                except asyncio.TimeoutError:
                    log.warning("no answer to a ping for %g s; the link is dead", PING_INTERVAL_S)
                    self.ws.transport.abort()
                    return

    async def send(self, data: bytes) -> None:
        """Send with flow control: waits for room (ConnectionClosed if the link goes)."""
        await self.ws.send(data)

    def send_now(self, data: bytes) -> bool:
        """Send a binary message at once, without a task switch, if the connection is
        open and its write buffer is below the limit; False means use :meth:`send`
        (which waits for room, or raises ConnectionClosed). Through websockets' Sans-I/O
        protocol: frame it, then hand its bytes to the transport."""
        ws, transport = self.ws, self.ws.transport
        if (
            ws.protocol.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_LIMIT
        ):
            return False
        ws.protocol.send_binary(data)
        for chunk in ws.protocol.data_to_send():
            transport.write(chunk)
        return True

    def _pong(self, ping: Ping) -> None:
        """Answer the receiver's ping now, stamped with this machine's wall clock (framed
        whole and written without a task switch, between audio packets)."""
        ws = self.ws
        if ws.protocol.state is not State.OPEN or ws.transport.is_closing():
            return
        now_us = int(time.time() * 1e6)
        ws.protocol.send_text(Pong(ping.t1_us, now_us, now_us).serialize().encode())
        for chunk in ws.protocol.data_to_send():
            ws.transport.write(chunk)

    def detach(self) -> None:
        """Tell nobody any more what happens on this connection."""
        self.on_reply = lambda _reply: None
        self.on_closed = lambda _code, _reason: None

    async def close(self) -> None:
        """The closing handshake (bounded by ``close_timeout``), then stop reading."""
        self.detach()
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()
        self._stop_tasks()

    def _stop_tasks(self) -> None:
        self._reader.cancel()
        if self._pinger is not None:
            self._pinger.cancel()

    def abort(self) -> None:
        """Drop the connection at once (no close handshake with a receiver that may not
        be reading)."""
        self.detach()
        self.ws.transport.abort()
        self._stop_tasks()
