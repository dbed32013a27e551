"""What a sender keeps of a stream so that its next process can end it (pure).

A receiver lets only a stream's own sender continue it: the sender proves it with the
resume secret from the stream's first accept (docs/PROTOCOL.md §5). That secret lives in
the sender's memory, so a sender that was killed, or stopped while its receiver was down,
left a stream its next process could not touch: the receiver held the name for it, and
refused the new process as "another sender". So the sender also keeps each stream's
:class:`ResumeEntry` in a small file (micwire.sender.state does the I/O), keyed by the
receiver and the stream name (:func:`entry_stem`); a new process finds it, proves it owns
the earlier stream and ends it (:meth:`ResumeEntry.ending_hello`).

Everything here is values in, values out: keys, the entry's JSON, the hello.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import MicwireError
from .names import sanitize_stream_name
from .protocol import Hello, StreamParams

#: The entry file's own format version (a later micwire may keep more).
ENTRY_VERSION = 1
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


def receiver_key(url: str) -> str:
    """The receiver a URL names, written one way: ``WS://Studio.local`` and
    ``ws://studio.local:80/`` are the same receiver. The path stays (a load balancer may
    route on it, docs/DEPLOY.md); user info and the fragment go. Raises ValueError for a
    URL that is not ws:// or wss://."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    host = parts.hostname.rstrip(".")  # urlsplit lower-cases it
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS[scheme]
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{host}:{port}{parts.path or '/'}{query}"


def entry_stem(receiver: str, stream: str) -> str:
    """The file name (without extension) of a stream's entry: readable (the stream name,
    sanitised) and unique (a digest of the receiver's key and the exact name: ``a/b`` and
    ``a?b``, or one name on two receivers, are two entries)."""
    digest = hashlib.sha256(f"{receiver}\0{stream}".encode()).hexdigest()[:20]
    return f"{sanitize_stream_name(stream)}-{digest}"


@dataclass(frozen=True)
class ResumeEntry:
    """One stream's proof of ownership, as its sender keeps it (a secret: mode 0600)."""

    receiver: str  # receiver_key() of the URL it was sent to
    stream: str
    stream_id: str
    resume_secret: str
    params: StreamParams
    start_time_us: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "micwire_resume": ENTRY_VERSION,
                "receiver": self.receiver,
                "stream": self.stream,
                "stream_id": self.stream_id,
                "resume_secret": self.resume_secret,
                **self.params.json_fields(),
                "start_time_us": self.start_time_us,
            },
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def parse(cls, text: str) -> ResumeEntry | None:
        """The entry ``text`` holds; None if it is not one (damaged, from another
        version): then there is nothing to end, and the file is replaced."""
        try:
            obj: Any = json.loads(text)
            if not isinstance(obj, dict) or obj.get("micwire_resume") != ENTRY_VERSION:
                return None
            fields = {
                key: obj[key]
                for key in ("receiver", "stream", "stream_id", "resume_secret", "codec")
            }
            numbers = {key: obj[key] for key in ("rate_hz", "channels", "bitrate", "pre_skip")}
            frame_ms, start = obj["frame_ms"], obj["start_time_us"]
            if not all(isinstance(v, str) for v in fields.values()) or not fields["stream"]:
                return None
            if not all(type(v) is int for v in numbers.values()) or type(start) is not int:
                return None
            if type(frame_ms) not in (int, float):
                return None
            params = StreamParams(
                fields["codec"],
                numbers["rate_hz"],
                numbers["channels"],
                float(frame_ms),
                numbers["bitrate"],
                numbers["pre_skip"],
            ).check()
            entry = cls(
                fields["receiver"],
                fields["stream"],
                fields["stream_id"],
                fields["resume_secret"],
                params,
                start,
            )
            # the receiver would refuse what it cannot parse: check it the same way now
            Hello.parse(entry.ending_hello(start, "").serialize())
        except (ValueError, KeyError, RecursionError, MicwireError):
            return None
        return entry if entry.resume_secret else None

    def ending_hello(self, sent_time_us: int, software: str) -> Hello:
        """The hello of a new process of the stream's sender that ends the stream: it
        resumes it (same id, parameters and secret) and says it restarted."""
        return Hello(
            self.stream,
            self.params,
            self.start_time_us,
            sent_time_us,
            software,
            stream_id=self.stream_id,
            resuming=True,
            resume_secret=self.resume_secret,
            restarted=True,
        )
