"""Where a new or continued stream starts on its timeline.

A sender that resumes with its secret may be continuing a recording this receiver (or
an earlier run of it) made: its sidecar says where that recording got to
(:func:`continued`). From that, or from the hello alone, come the stream's origin (where
its recording starts on the timeline; None: at its first packet) and its real-time bound
(how far the timeline may have got by now, :class:`~micwire.common.assembly.RealTimeBound`),
with the log line that says which case it is (:func:`starting_point`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from ..common.assembly import RealTimeBound
from ..common.protocol import Hello
from .storage import Previous, find_previous

log = logging.getLogger("micwire.receiver")


async def continued(hello: Hello, record_dir: Path | None) -> Previous | None:
    """The recording a resuming sender's stream continues (its sidecar in ``record_dir``
    proves the secret), if any; looked for off the event loop."""
    if hello.resuming and hello.resume_secret and record_dir is not None:
        return await asyncio.to_thread(
            find_previous,
            record_dir,
            hello.stream,
            hello.stream_id,
            hello.resume_secret,
            hello.params,
        )
    return None


def starting_point(
    hello: Hello, previous: Previous | None, max_backlog_s: float
) -> tuple[int | None, RealTimeBound]:
    """The stream's origin and real-time bound, from the recording it continues or from
    its hello."""
    rate = hello.params.rate_hz
    now = time.monotonic()
    if previous is not None:
        # the wall-clock bound carries over from the stream's first connection
        clock = previous.record.clock
        if clock is not None:
            clock_position, clock_utc = clock
            since = max(0.0, time.time() - clock_utc)
            bound = RealTimeBound(rate, clock_position + int(since * rate), now)
        else:
            bound = RealTimeBound(rate, previous.position, now)
        origin: int | None = previous.position
        if hello.restarted:
            log.info(
                "stream %r: its sender restarted and ends it at sample %d (%s)",
                hello.stream,
                previous.position,
                previous.path.name,
            )
        elif previous.record.complete:
            log.info(
                "stream %r: ended complete at sample %d (%s); its sender is back",
                hello.stream,
                previous.position,
                previous.path.name,
            )
        else:
            log.info(
                "stream %r: continuing %s from sample %d in a new part",
                hello.stream,
                previous.path.name,
                previous.position,
            )
    else:
        claimed = int(hello.claimed_age_us * rate / 1_000_000)
        bound = RealTimeBound(rate, claimed, now)
        if hello.resuming:  # a stream this receiver knows nothing of: it starts anywhere
            origin = None
        else:  # a new stream brings at most max_backlog_s captured before it connected
            origin = max(0, claimed - int(max_backlog_s * rate))
    return origin, bound
