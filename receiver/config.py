"""What a receiver is told to do."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..common.errors import TransportError


@dataclass
class ReceiverConfig:
    host: str | None = None  # None: every interface
    port: int = 8765
    record_dir: Path | None = None
    formats: tuple[str, ...] = ("wav",)
    play: bool = True
    output_device: str | None = None
    #: (glob, device) pairs: a stream whose name matches the first glob plays on that
    #: device (a name substring or index; "none": nowhere); the others on output_device.
    routes: tuple[tuple[str, str], ...] = ()
    latency_ms: float = 20.0
    #: A connection must send its request within this time (else it is closed: a client
    #: that never finishes its headers must not hold a connection for ever), and once
    #: upgraded to a WebSocket its hello; an idle keep-alive HTTP connection is closed
    #: after as long.
    hello_timeout_s: float = 10.0
    #: A connection that sends no audio for this long is closed (1013); a stream that had
    #: audio is kept for its sender to resume, like a broken link.
    idle_timeout_s: float = 30.0
    max_streams: int = 16
    #: Browser listeners per stream (the next is answered 503).
    max_listeners: int = 100
    #: A listener whose connection takes no audio for this long is disconnected.
    listener_stalled_s: float = 10.0
    #: While nothing is served live (playback, a page, a listener), the event loop looks
    #: at the network at most this often (micwire.receiver.eventloop). 0: at once; more
    #: than 200 gathers no more (the receiver's 0.2 s tick wakes the loop).
    gather_ms: float = 100.0
    #: Streams waiting for their sender to come back; beyond this the oldest is finalised.
    #: None: as many as ``max_streams``.
    max_parked: int | None = None
    #: How long a stream whose connection broke stays open for its sender to come back
    #: (with its resume secret): the recording then continues in the same file, gap-free.
    resume_grace_s: float = 60.0
    #: How much audio a new stream may bring that it captured before it connected (its
    #: sender's backlog, e.g. after waiting for a free slot). A stream's timeline never
    #: runs further ahead of the receiver's clock than that, plus a small margin.
    max_backlog_s: float = 120.0
    #: Called with every stream's live figures once per ``stats_interval_s``.
    on_stats: Callable[[list[dict[str, Any]]], None] | None = None
    #: Write one JSON object per stream per ``stats_interval_s`` to this file.
    stats_json: Path | None = None
    stats_interval_s: float = 1.0
    #: Shared secret senders must present as ``Authorization: Bearer <token>``.
    token: str | None = None
    #: Read-only token: may watch the monitor page, listen and read /metrics; not send.
    listen_token: str | None = None
    #: Send-only token: may send a stream (a guest's link); not watch.
    send_token: str | None = None
    #: TLS certificate chain and private key (PEM); both or neither.
    certfile: Path | None = None
    keyfile: Path | None = None
    #: Serve the monitor page, listeners and /metrics (False: senders and /healthz only).
    web: bool = True
    #: Alerts: "silence" below this level for this long; "down" when a sender is gone
    #: this long; each raised and cleared alert is POSTed as JSON to ``webhook``.
    silence_dbfs: float = -60.0
    silence_s: float = 30.0
    down_s: float = 10.0
    webhook: str | None = None
    #: Where the receiver keeps what must outlive it, other than recordings (the logins
    #: ended by "Log out"). None: in memory only.
    state_dir: Path | None = None
    #: Set in the workers of ``--workers N``: the supervisor's private directory (its
    #: control socket), which worker this is of how many, and the descriptor the
    #: supervisor hands it its connections on (micwire.receiver.acceptor).
    run_dir: Path | None = None
    worker: int = 0
    workers: int = 1
    handed_fd: int | None = None

    @property
    def parked_limit(self) -> int:
        return self.max_parked if self.max_parked is not None else self.max_streams

    def to_json(self) -> dict[str, Any]:
        """What a worker process needs to be told (no callbacks, paths as text)."""
        data: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if callable(value):
                continue
            data[field.name] = str(value) if isinstance(value, Path) else value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReceiverConfig:
        config = cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})
        for name in ("record_dir", "stats_json", "certfile", "keyfile", "run_dir", "state_dir"):
            value = getattr(config, name)
            if value is not None:
                setattr(config, name, Path(value))
        config.formats = tuple(config.formats)
        config.routes = tuple((str(glob), str(device)) for glob, device in config.routes)
        return config


def netloc(host: str, port: int) -> str:
    """``host:port`` as it goes in a URL: an IPv6 address in brackets (``[::1]:8765``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def own_address(family: socket.AddressFamily) -> str | None:
    """This machine's address on its default route, if it has one (nothing is sent: a
    UDP socket only picks its route when connected)."""
    probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"  # documentation nets
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def announce(host: str | None, port: int, tls: bool, note: str = "") -> tuple[str, str]:
    """Where senders and browsers reach a receiver listening on ``host`` (None: every
    interface): its WebSocket URL (with ``note``) and its monitor page, each as the log
    says it. On every interface, "0.0.0.0" reaches nothing from elsewhere: the address
    another machine uses is said too (this machine's on its default route, or its name)."""
    ws, web = ("wss", "https") if tls else ("ws", "http")
    if host not in (None, "", "0.0.0.0", "::"):
        listen = f"{ws}://{netloc(host, port)}" + (f" ({note})" if note else "")
        return listen, f"{web}://{netloc(host, port)}/"
    # "::" alone is IPv6 only (asyncio sets IPV6_V6ONLY), "0.0.0.0" IPv4 only
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    there = netloc(own_address(family) or socket.gethostname(), port)
    every = {"::": "every IPv6 interface", "0.0.0.0": "every IPv4 interface"}
    local = "[::1]" if host == "::" else "localhost"
    notes = "; ".join(x for x in (note, every.get(host or "", "every interface")) if x)
    return (
        f"{ws}://{netloc(host or '0.0.0.0', port)} ({notes}; from another machine: {ws}://{there})",
        f"{web}://{local}:{port}/ (from another machine: {web}://{there}/)",
    )


def open_warning(config: ReceiverConfig) -> str | None:
    """One line for a receiver anyone on the network may use: every interface, no token."""
    if config.token is not None or config.host not in (None, "", "0.0.0.0", "::"):
        return None
    what = "listen, download the recordings and send" if config.web else "send streams"
    return (
        f"no --token and every interface: anyone who can reach port {config.port} here can "
        f"{what}; add --token SECRET, or --host 127.0.0.1 to keep it to this machine"
    )


def listen_error(where: str, exc: OSError) -> TransportError:
    """One line for a port that cannot be listened on (``where``: an address or port)."""
    if exc.errno == errno.EADDRINUSE:
        return TransportError(
            f"cannot listen on {where}: the port is in use (another receiver?); pick another --port"
        )
    # asyncio's own message repeats the address: the system's words alone
    code = exc.errno or 0  # a name lookup's are negative
    why = os.strerror(code) if code > 0 else exc.strerror or str(exc)
    return TransportError(f"cannot listen on {where}: {why}")
