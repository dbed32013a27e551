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

import logging

from ..common.codecs import make_encoder
from ..common.connection.sender import Note, Notice, SenderProtocol, State
from ..common.errors import CodecError, RefusedError, UnreachableError
from ..common.resume import ResumeEntry
from .config import SenderConfig
from .delivery import Delivery
from .options import SOFTWARE

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
    try:  # before connecting: a connection left without its last packet holds the name
        encoder = make_encoder(entry.params)
    except CodecError as exc:
        log.warning("cannot end this sender's earlier stream %r: %s", name, exc)
        return
    protocol = SenderProtocol.ending(
        entry, encoder, software=SOFTWARE, done_timeout_s=DONE_TIMEOUT_S, url=config.url
    )
    accepts: list[int | None] = []

    def tell(notice: Notice) -> None:
        if notice.kind is Note.ACCEPTED and notice.accept is not None:
            accepts.append(notice.accept.resume_timestamp)

    try:
        finish = await Delivery(protocol, config, tell).run()
    except CodecError as exc:
        _not_ended(name, str(exc))
        return
    error = finish.error
    if finish.state is State.CONFIRMED:
        at = accepts[-1] if accepts else None
        if at is None:
            log.info("the receiver knew nothing of this sender's earlier stream %r", name)
            return
        recording = f" ({finish.report.recording})" if finish.report.recording else ""
        log.info(
            "ended this sender's earlier stream %r, which its earlier process left "
            "unconfirmed: its recording%s holds its first %.2f s; what that process had not "
            "delivered is not in it",
            name,
            recording,
            (finish.report.confirmed or 0) / rate,
        )
    elif accepts:  # it got in, and then no confirmation
        _not_ended(
            name, "no confirmation in time" if finish.state is State.UNDELIVERED else str(error)
        )
    elif isinstance(error, RefusedError):
        log.warning(
            "could not end this sender's earlier stream %r (the receiver refused: %s)",
            name,
            error.reason,
        )
    elif isinstance(error, UnreachableError) or (error is not None and not error.retry):
        raise error
    else:
        log.warning("could not end this sender's earlier stream %r (%s)", name, error)


def _not_ended(name: str, why: str) -> None:
    log.warning(
        "could not end this sender's earlier stream %r (%s): the receiver finalises it in "
        "its own time",
        name,
        why,
    )
