"""End the stream an earlier process of this sender left open on the receiver.

A sender killed mid-stream, or stopped while its receiver was down, leaves a stream the
receiver keeps for it (docs/PROTOCOL.md §5): the name is held, and a new process with a
new stream is refused as "another sender" until that runs out. The new process has the
earlier one's resume state (sender/state.py), so it proves the stream is its own and
ends it: a resuming hello that says it restarted, then the end-of-stream packet at the
accept's resume point, and the receiver's confirmation (``done``). The recording keeps
what the receiver had; what the earlier process had not delivered died with it, and the
sidecar says so. Then the new stream starts as usual, a new recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from websockets.exceptions import ConnectionClosed

from ..common.codecs import make_encoder
from ..common.errors import CodecError, RefusedError, TransportError, UnreachableError
from ..common.framing import Packetizer
from ..common.protocol import Hello
from ..common.resume import ResumeEntry
from .config import SenderConfig
from .link import SOFTWARE, Link

log = logging.getLogger("micwire.sender")
#: How long the receiver may take to confirm the end (it finalises the recording first).
DONE_TIMEOUT_S = 10.0


async def end_earlier(config: SenderConfig, entry: ResumeEntry) -> None:
    """End ``entry``'s stream on the receiver; say what became of it. Raises
    UnreachableError when no connection could be made (the caller tries again later, as
    for its own stream), and a TransportError that retrying cannot fix (a bad token, an
    untrusted certificate); anything else is said, and done with: the receiver finalises
    a stream left unfinished in its own time."""
    name, rate = entry.stream, entry.params.rate_hz

    def hello() -> Hello:
        return entry.ending_hello(int(time.time() * 1e6), SOFTWARE)

    try:  # before connecting: a connection left without its last packet holds the name
        encoder = make_encoder(entry.params)
    except CodecError as exc:
        log.warning("cannot end this sender's earlier stream %r: %s", name, exc)
        return
    try:
        link = await Link.open(config, hello)
    except RefusedError as exc:
        log.warning(
            "could not end this sender's earlier stream %r (the receiver refused: %s)",
            name,
            exc.reason,
        )
        return
    except UnreachableError:
        raise
    except TransportError as exc:
        if not exc.retry:
            raise
        log.warning("could not end this sender's earlier stream %r (%s)", name, exc)
        return
    try:
        at = link.accept.resume_timestamp
        # the end-of-stream packet at the resume point: nothing more to record (Opus: a
        # frame of silence that adds no samples; PCM: an empty packet)
        for packet in Packetizer(encoder, origin=at or 0).finish(time.time()):
            await link.send(packet.serialize())
        done = await asyncio.wait_for(link.wait_done(), DONE_TIMEOUT_S)
    except (ConnectionClosed, asyncio.TimeoutError, CodecError) as exc:
        why = "no confirmation in time" if isinstance(exc, asyncio.TimeoutError) else str(exc)
        log.warning(
            "could not end this sender's earlier stream %r (%s): the receiver finalises "
            "it in its own time",
            name,
            why,
        )
        return
    finally:
        with contextlib.suppress(Exception):
            await link.close()
    if at is None:
        log.info("the receiver knew nothing of this sender's earlier stream %r", name)
        return
    recording = f" ({done.recording})" if done.recording else ""
    log.info(
        "ended this sender's earlier stream %r, which its earlier process left unconfirmed: "
        "its recording%s holds its first %.2f s; what that process had not delivered is "
        "not in it",
        name,
        recording,
        done.timestamp / rate,
    )
