"""Every stream the receiver knows, and who may take a name.

A stream is known by its name exactly as sent. Its first connection gets a random resume
secret in the accept; only a connection presenting that secret may continue the stream
(after a broken link, a restart of the receiver, or to replace its own half-open
connection). Anyone else asking for a name in use is refused for now (1013: try again
later), told whose it is and until when.

Limits: at most ``max_streams`` live streams that have sent audio (a proven resume always
gets its own slot back; with ``--workers`` over every worker, where the other workers'
count every live stream), as many again that have not yet (the one silent longest is
closed to make room for a newcomer; any is closed after ``idle_timeout_s`` without
audio), at most ``parked_limit`` streams waiting for
their sender (the oldest is finalised to make room). A stream that never sent audio leaves
nothing behind: files are created on its first audio, and it holds no name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from ..common import outcome as outcomes
from ..common.alerts import AlertRules
from ..common.audiofile import get_format
from ..common.errors import AudioFormatError, MicwireError
from ..common.outcome import Outcome
from ..common.protocol import Accept, Hello
from ..common.routing import owner
from . import logs
from .config import ReceiverConfig
from .holds import Holder, Holds
from .mixer import Mixers
from .origin import continued, starting_point
from .stream import Attachment, Stream, log_key

log = logging.getLogger("micwire.receiver")
#: How long a proven resume waits for the stream's old, half-open connection to let go.
TAKEOVER_WAIT_S = 2.0


class Refusal(MicwireError):
    """A hello the receiver will not serve: for good (1008) or for now (1013; then perhaps
    when to try again)."""

    def __init__(
        self, reason: str, retry: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after_s = retry_after_s

    @classmethod
    def in_use(cls, name: str, holder: Holder) -> Refusal:
        now = time.time()
        return cls(holder.reason(name, now), True, holder.retry_after_s(now))


class Streams:
    """Every stream the receiver knows: live and parked, by name."""

    def __init__(
        self,
        config: ReceiverConfig,
        mixers: Mixers | None,
        on_finished: Callable[[Stream], Awaitable[None]],
        alert_rules: AlertRules | None = None,
    ) -> None:
        self.config = config
        self.alert_rules = alert_rules or AlertRules()
        self.mixers = mixers
        self.live: dict[str, Stream] = {}
        self.parked: dict[str, Stream] = {}
        self._on_finished = on_finished
        self.admitting: set[str] = set()  # names with a hello being answered
        #: Streams being finalised (files, sidecar), by name: set when done.
        self.finishing: dict[str, asyncio.Event] = {}
        #: Live playback of ended streams still playing out or closing its device.
        self.stopping_playback: set[asyncio.Future[None]] = set()
        #: With ``--workers N``: live streams on the other workers (the supervisor says),
        #: and who hears of this worker's own count when it changes.
        self.live_elsewhere = 0
        self.on_live: Callable[[int], None] | None = None
        #: The receiver is shutting down: streams are finalised, not parked.
        self.stopping = False
        #: Names held for a sender that may come back to continue its stream.
        self.holds = Holds(config)

    def __len__(self) -> int:
        return len(self.live) + len(self.parked)

    def all(self) -> list[Stream]:
        return [*self.live.values(), *self.parked.values()]

    def shown(self) -> list[Stream]:
        """Live and parked streams that people see (:attr:`Stream.shown`)."""
        return [stream for stream in self.all() if stream.shown]

    async def admit(self, hello: Hello, peer: str, attachment: Attachment) -> Accept:
        """Attach a connection to the stream its hello names: a new stream, or the
        stream's own sender coming back. Raises Refusal."""
        name = hello.stream
        cfg = self.config
        if cfg.workers > 1 and owner(name, cfg.workers) != cfg.worker:
            # a connection on a path without the name (routed to any worker)
            raise Refusal(
                f"this receiver runs {cfg.workers} workers: a sender connects to "
                "/stream/<name> (URL-encoded), which takes it to the worker of its stream"
            )
        if name in self.admitting:
            raise Refusal(f"stream name {name!r} is being taken by another connection", True)
        self.admitting.add(name)
        try:
            stream = await self.known(name)
            if stream is not None and not stream.proves(hello):
                raise Refusal.in_use(name, self.holds.of(stream))
            # admitted: its lines count against the stream (logs.py): this sender's, so that
            # another taking the name after it has its own lines shown
            logs.STREAM.set(log_key(name, hello.stream_id))
            if stream is not None and not await self._take_back(stream, peer, hello.restarted):
                # its last packet came while its old connection was let go: it is
                # finished, and continued like any stream that ended here (a new part)
                stream = await self.known(name)
            if stream is not None:
                accept_at: int | None = stream.position
                secret: str | None = hello.resume_secret
            else:
                stream, accept_at, secret = await self._new(hello, peer)
            await stream.playout.settle()
            stream.attach(attachment)
            self.live[name] = stream
            self._live_changed()
            return Accept(
                name,
                stream.recording.name if stream.recording.part is not None else None,
                resume_timestamp=accept_at,
                resume_secret=secret,
            )
        finally:
            self.admitting.discard(name)

    async def known(self, name: str) -> Stream | None:
        """The live or parked stream of this name, once a finalisation in progress is
        over (a sender coming back as its stream ends must find the sidecar complete)."""
        while (finishing := self.finishing.get(name)) is not None:
            await finishing.wait()
        return self.live.get(name) or self.parked.get(name)

    def _live_changed(self) -> None:
        if self.on_live is not None:
            self.on_live(len(self.live))

    async def _close_the_longest_silent(self) -> None:
        """Make room among the connections that have sent no audio yet: the one silent the
        longest is cut (a sender sends its first audio at once, so it is the squatter)."""
        waiting = [s for s in self.live.values() if not s.shown and s.attachment is not None]
        if not waiting:
            return
        oldest = min(waiting, key=lambda stream: stream.first_seen)
        log.warning(
            "stream %r from %s: no audio in %.1f s, and %d connections wait without audio: "
            "closed to make room",
            oldest.name,
            oldest.peer,
            time.time() - oldest.first_seen,
            len(waiting),
        )
        attachment = oldest.attachment
        assert attachment is not None
        attachment.abort()  # its handler lets go of the stream as for a lost link
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(attachment.detached.wait(), TAKEOVER_WAIT_S)

    async def let_go(self, stream: Stream) -> bool:
        """Cut the stream's connection, if it has one: no close handshake (the link may be
        dead); wait a little for its handler to let go. False if that connection ended the
        stream meanwhile (its last packet was still to be read): then once it is
        finalised."""
        old = stream.attachment
        if old is not None:
            old.replaced = True
            old.abort()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(old.detached.wait(), TAKEOVER_WAIT_S)
            stream.detach()
        if stream.state == "ended":
            await self.known(stream.name)
            return False
        return True

    async def _take_back(self, stream: Stream, peer: str, restarted: bool = False) -> bool:
        """The stream's own sender is back: from parked, or replacing its own connection
        (a half-open link the receiver has not noticed yet). False if the old connection
        ended the stream (its last packet) while it was let go."""
        if stream.expiry is not None:
            stream.expiry.cancel()
            stream.expiry = None
        if stream.attachment is not None:
            log.warning("stream %r: %s replaces its own stale connection", stream.name, peer)
            if not await self.let_go(stream):
                return False
        self.parked.pop(stream.name, None)
        stream.reconnects += 1
        stream.peer = peer
        stream.outcome = outcomes.OPEN
        if restarted:
            log.info(
                "stream %r: its sender restarted (%s) and ends it at sample %d",
                stream.name,
                peer,
                stream.position,
            )
        else:
            log.info(
                "stream %r: %s is back; resuming at sample %d", stream.name, peer, stream.position
            )
        return True

    async def _new(self, hello: Hello, peer: str) -> tuple[Stream, int | None, str | None]:
        cfg = self.config
        for name in cfg.formats if cfg.record_dir is not None else ():
            try:  # refused now, for good, rather than failing on the first audio, again and again
                get_format(name).check(hello.params.rate_hz, hello.params.channels)
            except AudioFormatError as exc:
                raise Refusal(f"this receiver records {name}: {exc}") from exc
        previous = await continued(hello, cfg.record_dir)
        proven = previous is not None
        if not proven and (holder := await self.holds.reserved(hello)) is not None:
            raise Refusal.in_use(hello.stream, holder)
        if not proven:
            # a slot is for a stream that sends audio: connections that only said hello
            # (an attacker with the send token) have as many slots again, and the newcomer
            # (whose audio follows at once, if it is a sender) takes the longest-silent one
            sounding = sum(1 for stream in self.live.values() if stream.shown)
            if sounding + self.live_elsewhere >= cfg.max_streams:
                raise Refusal(f"receiver is full ({cfg.max_streams} streams)", retry=True)
            if len(self.live) - sounding >= cfg.max_streams:
                await self._close_the_longest_silent()
        self.holds.returned(hello, proven)
        origin, bound = starting_point(hello, previous, cfg.max_backlog_s)
        if proven:  # the sender proved it owns the stream with its secret
            secret: str | None = hello.resume_secret
        else:  # version 1 senders cannot resume: no secret
            secret = secrets.token_urlsafe(24) if hello.version >= 2 else None
        stream = Stream(
            cfg,
            hello,
            peer,
            secret or "",
            origin,
            bound,
            previous,
            self.mixers,
            self.alert_rules,
        )
        return stream, origin, secret

    async def release(
        self, stream: Stream, attachment: Attachment, outcome: Outcome, lost: bool
    ) -> None:
        """A connection ended. Its stream is parked for its sender to come back (the link
        was lost and the stream can be resumed), or finalised."""
        try:
            if attachment.replaced or stream.attachment is not attachment:
                return  # another connection of the same stream carries on
            stream.detach()
            if stream.state == "ended":
                return  # finished already (its last packet came)
            if self.stopping:  # its connection ended because the receiver closed it (1001)
                await self.finish(stream, outcomes.INTERRUPTED)
            elif lost and stream.resumable and stream.has_audio:
                await self._park(stream, outcome)
            else:
                await self.finish(stream, outcome)
        finally:
            attachment.detached.set()

    async def _park(self, stream: Stream, outcome: Outcome) -> None:
        # parked before anything is awaited: a sender coming back at once must find it
        self.live.pop(stream.name, None)
        self._live_changed()
        self.parked[stream.name] = stream
        stream.state = "parked"
        stream.parked_at = time.time()
        stream.outcome = outcome
        grace = self.config.resume_grace_s
        log.warning(
            "stream %r: %s; keeping it open %g s for the sender to come back",
            stream.name,
            outcome,
            grace,
        )

        async def expire() -> None:
            await asyncio.sleep(grace)
            if self.parked.get(stream.name) is stream:
                await self.finish(stream, stream.outcome)

        stream.expiry = asyncio.create_task(expire())
        await stream.playout.stop()  # a parked stream holds no sound device
        while len(self.parked) > self.config.parked_limit:
            oldest = next(iter(self.parked.values()))
            with logs.about(oldest.peer, oldest.log_key):  # its lines, not the parker's
                log.warning("stream %r: too many streams waiting; finalising it", oldest.name)
                await self.finish(oldest, oldest.outcome)

    async def finish(self, stream: Stream, outcome: Outcome) -> None:
        """Finalise a stream for good: files, sidecar, report."""
        done = self.finishing[stream.name] = asyncio.Event()
        try:
            await self._finish(stream, outcome)
        finally:
            if self.finishing.get(stream.name) is done:
                del self.finishing[stream.name]
            done.set()

    async def _finish(self, stream: Stream, outcome: Outcome) -> None:
        self.holds.hold(stream, outcome)
        if self.live.get(stream.name) is stream:
            del self.live[stream.name]
            self._live_changed()
        if self.parked.get(stream.name) is stream:
            del self.parked[stream.name]
        if stream.expiry is not None and stream.expiry is not asyncio.current_task():
            stream.expiry.cancel()
        try:
            await stream.close(outcome)
        except MicwireError as exc:
            log.error("stream %r: %s", stream.name, exc)
        except Exception:
            log.exception("stream %r: could not finalise", stream.name)
        stopped = stream.playout.stopped
        if stopped is not None and not stopped.done():  # for the receiver's stop to wait on
            self.stopping_playback.add(stopped)
            stopped.add_done_callback(self.stopping_playback.discard)
        await self._on_finished(stream)
