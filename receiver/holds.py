"""Who has a stream name, and until when; said in a refusal a person can act on.

A name is in use while its stream is live, and held for its sender for a grace period
after its connection broke (docs/PROTOCOL.md §5, §7). A refused sender's user wants to
know whose the name is and when it frees: "stream name 'kit' is in use: held for its
sender at 10.0.0.7:50312, which may come back to continue it, until 17:42:10 UTC (48 s);
pick another name, or retry then". A held name's refusal also says when to retry
(``retry_after_s``), so senders wait instead of asking every two seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.names import sanitize_stream_name
from ..common.outcome import Outcome
from ..common.protocol import Hello
from .config import ReceiverConfig
from .storage import read_sidecar

if TYPE_CHECKING:
    from .stream import Stream

#: Ended streams whose names are remembered (the oldest is forgotten first).
MAX_HELD = 1000


def utc_clock(unix_s: float) -> str:
    """``17:42:10 UTC``."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix_s))


@dataclass(frozen=True)
class Holder:
    """Whose a stream name is: a live stream's sender (``since`` when), or a sender that
    may come back to continue its stream (``until`` when the name frees otherwise)."""

    peer: str
    since: float | None = None  # Unix seconds
    until: float | None = None  # Unix seconds; None: while the stream is live

    def reason(self, name: str, now: float) -> str:
        if self.until is None:
            since = f", since {utc_clock(self.since)}" if self.since is not None else ""
            return (
                f"stream name {name!r} is in use by another sender ({self.peer}{since}); "
                "pick another name, or retry when it ends"
            )
        left = math.ceil(max(0.0, self.until - now))
        return (
            f"stream name {name!r} is in use: held for its sender at {self.peer}, which may "
            f"come back to continue it, until {utc_clock(self.until)} ({left} s); pick "
            "another name, or retry then"
        )

    def retry_after_s(self, now: float) -> float | None:
        """When the name frees, unless its sender comes back first (None: unknown)."""
        return None if self.until is None else max(0.0, self.until - now)


def name_reserved(directory: Path, stream: str, started: float, grace_s: float) -> Holder | None:
    """Is a sidecar of this exact name saying its stream was interrupted, recently enough
    that its sender may still come back? "Recently": within ``grace_s`` of when it was
    last written, or of ``started`` (the receiver's own start, after a restart). Returns
    whose the name is and until when. Blocking: run it off the event loop."""
    import time

    now = time.time()
    holder: Holder | None = None
    for path in directory.glob(f"{sanitize_stream_name(stream)}-*.json"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if now - max(mtime, started) > grace_s:
            continue
        record = read_sidecar(path)
        if (
            record is not None
            and record.stream == stream
            and Outcome.parse(record.outcome).resumable
        ):
            until = max(mtime, started) + grace_s
            if holder is None or holder.until is None or until > holder.until:
                holder = Holder(record.peer or "an unknown address", until=until)
    return holder


class Holds:
    """The names a receiver holds for a sender that may come back: a stream that ended
    here without its last packet (in memory), or one a restart of the receiver
    interrupted (its sidecar): for ``resume_grace_s``, only the stream's own sender may
    take the name."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        #: Streams that ended without their last packet, by name, with when they ended.
        self.ended: dict[str, tuple[float, Stream]] = {}
        self.started = time.time()

    def of(self, stream: Stream) -> Holder:
        """Whose the live or parked ``stream``'s name is, and until when."""
        if stream.state != "parked" or stream.parked_at is None:
            return Holder(stream.peer, since=stream.first_seen)
        grace = self.config.resume_grace_s
        until = stream.parked_at + grace
        if stream.resumable and stream.outcome.resumable:
            until += grace  # once finalised, its name is held as long again (hold())
        return Holder(stream.peer, until=until)

    def held(self, name: str) -> bool:
        """Is the name held for a stream that ended here and whose sender may come back?"""
        return self._ended_within_grace(name) is not None

    def _ended_within_grace(self, name: str) -> tuple[float, Stream] | None:
        """(when, what) of the stream of this name that ended here within the grace time."""
        ended = self.ended.get(name)
        if ended is not None and time.time() - ended[0] < self.config.resume_grace_s:
            return ended
        return None

    async def reserved(self, hello: Hello) -> Holder | None:
        """Whose the name ``hello`` asks for is, and until when, if it is held for another
        sender (None: free, or held for this one)."""
        grace = self.config.resume_grace_s
        ended = self._ended_within_grace(hello.stream)
        if ended is not None:
            if ended[1].proves(hello):
                return None
            return Holder(ended[1].peer, until=ended[0] + grace)
        if self.config.record_dir is None:
            return None
        return await asyncio.to_thread(
            name_reserved, self.config.record_dir, hello.stream, self.started, grace
        )

    def returned(self, hello: Hello, proven: bool) -> None:
        """The sender a name was held for is back (``proven`` by its sidecar, or by the
        stream held here): the name is its own again, and once this stream ends (e.g.
        because that sender restarted), nobody is waited for."""
        ended = self.ended.get(hello.stream)
        if ended is not None and (proven or ended[1].proves(hello)):
            del self.ended[hello.stream]

    def hold(self, stream: Stream, outcome: Outcome) -> None:
        """A stream ends with ``outcome``: its name is held if its sender may come back.
        A connection that never sent audio holds no name (a bare hello must not lock a
        room's own sender out of it for the grace)."""
        if stream.resumable and stream.shown and outcome.resumable and not stream.ended_before:
            self.ended[stream.name] = (time.time(), stream)
            while len(self.ended) > MAX_HELD:
                del self.ended[next(iter(self.ended))]
