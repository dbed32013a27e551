"""Which process owns a stream: decided by its name, never negotiated (pure).

With ``micwire receive --workers N`` every stream name belongs to one worker for the
stream's whole life: ``owner(name, N)``, a hash of the name that every process computes
alike (not Python's own ``hash()``, which differs from process to process). A connection is
routed to its owner by the name in its request path: ``/stream/<name>`` for a sender (the
path the browser guest and the CLI sender use, and the one HAProxy's ``balance uri`` hashes
across machines), ``/api/listen/<name>`` for a listener; any other request may go to any
worker. The name in a path is URL-encoded, as in docs/PROTOCOL.md §10.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: Path prefixes whose next segment is a stream name.
NAMED_PREFIXES = ("/stream/", "/api/listen/")


def owner(name: str, workers: int) -> int:
    """The worker (0 .. workers-1) that owns stream ``name``."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % workers


def name_in_path(path: str) -> str | None:
    """The stream name a request path routes by (``/stream/kit%20chen?x=1`` is
    ``kit chen``), or None for a path that names none."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    for prefix in NAMED_PREFIXES:
        if path.startswith(prefix):
            segment = path[len(prefix) :].split("/", 1)[0]
            return unquote(segment, errors="surrogateescape") or None
    return None


def request_path(head: bytes) -> str | None:
    """The path of an HTTP/1.x request line at the start of ``head`` (``GET /x HTTP/1.1``),
    or None when the line is not whole yet or is not one."""
    line, found, _ = head.partition(b"\r\n")
    if not found:
        return None
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    return parts[1].decode("latin-1")


def stream_url(url: str, name: str) -> str:
    """Where a sender connects: the receiver's URL with ``/stream/<name>`` as its path when
    it has none (``ws://studio:8765`` sends ``kit`` to ``ws://studio:8765/stream/kit``), so
    that ``--workers`` and a load balancer route it by the name; a path given is kept."""
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        return url
    path = "/stream/" + quote(name, safe="")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))
