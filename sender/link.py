"""One connection to the receiver: open it, say hello, read what the receiver says back.

Every failure becomes one :class:`~micwire.common.errors.TransportError` with a sentence
a person can act on. The receiver's acknowledgements (version 2) arrive on the same
connection; :class:`Link` keeps the latest and the final confirmation.
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
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.protocol import State

from .. import __version__
from ..common.errors import (
    ParameterError,
    ProtocolError,
    RefusedError,
    TransportError,
    UnreachableError,
)
from ..common.protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    HEADER,
    Accept,
    Ack,
    Done,
    Hello,
    Refuse,
    parse_reply,
)
from ..common.routing import stream_url
from .config import SenderConfig

log = logging.getLogger("micwire.sender")
SOFTWARE = f"micwire/{__version__}"


def closed_message(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:  # no close frame: a reset, a dead link, a receiver that crashed
        return "lost the connection to the receiver"
    reason = f": {exc.rcvd.reason}" if exc.rcvd.reason else ""
    return f"the receiver closed the connection{reason}"


def final_close(exc: ConnectionClosed) -> bool:
    """The receiver closed us for a reason that retrying cannot fix (protocol error, a
    refusal for good, a message too big)."""
    code = exc.rcvd.code if exc.rcvd else None
    return code in (CLOSE_PROTOCOL_ERROR, CLOSE_REFUSED, CLOSE_TOO_BIG)


def _is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """A ws:// or wss:// URL websockets can open, else one ParameterError."""
    from websockets.uri import parse_uri

    try:
        parse_uri(url)
    except (InvalidURI, ValueError) as exc:
        raise ParameterError(
            f"bad receiver URL {url!r}: use ws://HOST:PORT or wss://HOST:PORT ({exc})"
        ) from exc


#: Bytes asyncio's transport may hold before sending waits. (The kernel's socket buffer
#: holds about a second more, :func:`send_buffer_bytes`: whatever a dead connection held
#: is sent again on the next, which resumes from what the receiver has.)
WRITE_LIMIT = 2**15


def send_buffer_bytes(config: SenderConfig) -> int:
    """The socket's send buffer: half a second of the stream on the wire (the kernel
    doubles it), at least 16 KiB. Left to itself Linux lets it grow to 4 MB (40 s of PCM,
    16 minutes of Opus) on a link slower than the stream: audio would wait there, out of
    the spool's bound (--spool-s) and of its count, and live listening would fall ever
    further behind. A second in flight still fills a link of up to a second's round trip.
    """
    if config.codec == "pcm":
        per_s = config.rate_hz * config.channels * 2
    else:
        per_s = config.bitrate // 8
    headers_per_s = 1000 / config.frame_ms * (HEADER.size + 14)  # ours and WebSocket's
    return max(2**14, int((per_s + headers_per_s) / 2))


def connect_options(config: SenderConfig) -> dict[str, Any]:
    url = config.url
    options: dict[str, Any] = {
        "additional_headers": ({"Authorization": f"Bearer {config.token}"} if config.token else {}),
        # audio does not compress; small write buffers add no latency
        "compression": None,
        "max_size": 2**16,
        "write_limit": WRITE_LIMIT,
        "open_timeout": config.connect_timeout_s,
        # a close handshake with a dead receiver must not hold up a reconnect
        "close_timeout": 2.0,
        # no keepalive pings: the receiver's acknowledgements say the link is alive
        # (Link._watch), and on a link slower than the stream a ping waits behind the
        # audio queued in the socket, times out, and drops a working connection
        "ping_interval": None,
        "user_agent_header": SOFTWARE,
        "proxy": None,
    }
    if config.cafile is not None:  # otherwise the system trust store, for wss://
        if not url.startswith("wss://"):
            raise ParameterError("--cafile is for wss:// URLs")
        try:
            options["ssl"] = ssl.create_default_context(cafile=str(config.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise ParameterError(f"cannot load --cafile {config.cafile}: {exc}") from exc
    return options


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


#: A receiver acknowledges every second; this long without a word, the link is taken for
#: dead (a half-open connection: a network that stopped delivering without a reset).
SILENCE_TIMEOUT_S = 6.0
#: A version 1 receiver is pinged this often, and given as long to answer.
PING_INTERVAL_S = 20.0


class Link:
    """An open connection whose hello was accepted."""

    def __init__(self, ws: ClientConnection, accept: Accept) -> None:
        self.ws = ws
        self.accept = accept
        self.last_heard = time.monotonic()
        #: Called when the connection is gone (the sender's wake-up: it may be waiting
        #: for audio rather than sending).
        self.on_lost: Callable[[], None] | None = None
        #: The latest position the receiver acknowledged on this connection.
        self.acknowledged = 0
        self.done: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        self._reader.add_done_callback(lambda _: self.on_lost() if self.on_lost else None)
        self._watchdog: asyncio.Task[None] | None = None
        if accept.version >= 2:  # version 1 receivers send nothing after the accept
            self._watchdog = asyncio.create_task(self._watch())
        else:  # so they get pings, as websockets' keepalive would
            self._watchdog = asyncio.create_task(self._ping())

    @classmethod
    async def open(cls, config: SenderConfig, hello: Callable[[], Hello]) -> Link:
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
            raise TransportError(closed_message(exc), retry=not final_close(exc)) from exc
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
        return cls(ws, reply)

    async def _read(self) -> None:
        """Acknowledgements and the final confirmation; pings are answered by websockets
        as long as messages are read."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                self.last_heard = time.monotonic()
                try:
                    reply = parse_reply(message)
                except ProtocolError as exc:
                    log.debug("ignoring a message from the receiver: %s", exc)
                    continue
                if isinstance(reply, Ack):
                    self.acknowledged = max(self.acknowledged, reply.timestamp)
                elif isinstance(reply, Done) and not self.done.done():
                    self.acknowledged = max(self.acknowledged, reply.timestamp)
                    self.done.set_result(reply)

    async def _watch(self) -> None:
        while not self._reader.done():
            await asyncio.sleep(1.0)
            silent = time.monotonic() - self.last_heard
            if silent > SILENCE_TIMEOUT_S and not self.done.done():
                log.warning("no word from the receiver for %.0f s; the link is dead", silent)
                self.ws.transport.abort()
                return

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

    @property
    def lost(self) -> bool:
        """The connection is gone (read side ended)."""
        return self._reader.done()

    async def send(self, data: bytes) -> None:
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

    async def wait_done(self) -> Done:
        """The receiver's confirmation after the last packet; ConnectionClosed if the
        connection ends without it."""
        waits: list[asyncio.Future[Any]] = [self.done, self._reader]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if self.done.done():
            return self.done.result()
        await self.ws.wait_closed()
        raise self.ws.protocol.close_exc

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()
        self._stop_tasks()

    def _stop_tasks(self) -> None:
        self._reader.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()

    def abort(self) -> None:
        """Drop the connection at once (no close handshake with a receiver that may not
        be reading)."""
        self.ws.transport.abort()
        self._stop_tasks()
