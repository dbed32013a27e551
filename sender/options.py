"""How the sender's WebSocket connections are made: the URLs it takes, websockets' options
(no compression, small write buffers, no keepalive pings, a token), the socket's send
buffer, and the name it gives itself."""

from __future__ import annotations

import ssl
from typing import Any

from websockets.exceptions import InvalidURI

from .. import __version__
from ..common.errors import ParameterError
from ..common.protocol import HEADER
from .config import SenderConfig

SOFTWARE = f"micwire/{__version__}"


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
        per_s = config.params().rate_hz * config.channels * 2
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
        # (the silence rule, common/connection/sender.py), and on a link slower than the
        # stream a ping waits behind the audio queued in the socket, times out, and drops
        # a working connection
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
