"""The sender's side of a stream, as a state machine without I/O (docs/PROTOCOL.md §1-§6).

Modelled on websockets' ``protocol.py``: the asyncio code around it (sender/delivery.py,
with sender/link.py for one connection) feeds :class:`SenderProtocol` events and performs
the actions they return. It never reads a clock (each event brings ``now``, monotonic
seconds; packets get the wall clock they are stamped with) and draws back-off jitter from
an injected random source, so every path is a table-driven test
(tests/cases/sender_connection.json), run against this class and against its mirror in
the guest page (receiver/web/send-core.js).

Events: :meth:`~SenderProtocol.start`, :meth:`~SenderProtocol.connected` (the receiver's
accept), :meth:`~SenderProtocol.connect_failed`, :meth:`~SenderProtocol.captured`,
:meth:`~SenderProtocol.writable` (the link takes more: what next?),
:meth:`~SenderProtocol.ack`, :meth:`~SenderProtocol.done`, :meth:`~SenderProtocol.heard`,
:meth:`~SenderProtocol.closed`, :meth:`~SenderProtocol.stop`, :meth:`~SenderProtocol.tick`,
:meth:`~SenderProtocol.retry`. Actions: :class:`Connect`, :class:`Send`, :class:`Wait`,
:class:`Close`, :class:`Notice` (something to tell the user), :class:`Finish`.

Link states (:class:`State`)::

    IDLE -start-> CONNECTING -connected-> STREAMING -stop, all sent-> FINISHING -done-> CONFIRMED
                   |      ^                  |                          |
        connect_failed    tick(retry_at)     closed, or 6 s without a word from the receiver
                   v      |                  v                          v
                  WAITING <--- (back-off; at once if the connection got somewhere) ---+
                   |
                   +-> FAILED: what waiting cannot fix, or no connection for
                       reconnect_timeout_s                 stopped + finish_timeout_s -> UNDELIVERED

Capture never waits for the network: :meth:`~SenderProtocol.captured` only appends to the
spool. Packets are made when the shell asks (:meth:`~SenderProtocol.writable`, one spool
block's packets at a time), so while a link is slow or down the audio waits in the spool,
bounded (its oldest dropped and counted), not in a queue of packets. Each connection is a
new codec stream from where the receiver's accept says its recording ends (Opus: a little
earlier, so the fresh encoder has settled: the receiver drops what it has).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from ..codecs import Encoder
from ..errors import RefusedError, TransportError
from ..framing import Block, Framer, Packetizer, codec_origin
from ..protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    CLOSE_TOO_BIG,
    Accept,
    Done,
    Hello,
    StreamParams,
)
from ..resume import ResumeEntry
from ..spool import AudioSpool, Losses, Spool
from .report import SenderReport

#: A resumed Opus stream starts its fresh encoder this much before where the receiver's
#: recording ends (the receiver drops what it has already): a new encoder takes a few
#: hundred ms to settle (its first frames are coded differently), and so does a decoder.
OPUS_PRIME_S = 0.5
#: Reconnect back-off: from 0.1 s doubling up to 2 s, with jitter (audio cannot wait the
#: seconds a web client's back-off starts at).
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
#: A receiver's "retry after" is believed up to this (it holds a name at most a minute or
#: two for a sender that may come back).
RETRY_AFTER_MAX_S = 150.0
#: A receiver acknowledges every second; this long without a word, the link is taken for
#: dead (a half-open connection: a network that stopped delivering without a reset).
SILENCE_TIMEOUT_S = 6.0
#: Close codes after which retrying cannot help (PROTOCOL.md §6): a protocol error, a
#: refusal for good, a message too big.
FINAL_CLOSE_CODES = (CLOSE_PROTOCOL_ERROR, CLOSE_REFUSED, CLOSE_TOO_BIG)


def closed_message(code: int | None, reason: str) -> str:
    """A connection that ended, in words: ``code`` None means no close frame came (a
    reset, a dead link, a receiver that crashed)."""
    if code is None:
        return "lost the connection to the receiver"
    return f"the receiver closed the connection{f': {reason}' if reason else ''}"


def final_close(code: int | None) -> bool:
    """The receiver closed us for a reason that retrying cannot fix."""
    return code in FINAL_CLOSE_CODES


class State(Enum):
    IDLE = "idle"
    CONNECTING = "connecting"  # a connection is being made (hello sent, or about to be)
    WAITING = "waiting"  # backing off until ``retry_at``
    STREAMING = "streaming"  # accepted: sending from the spool
    FINISHING = "finishing"  # the LAST packet is out: waiting for ``done``
    CONFIRMED = "confirmed"  # the receiver confirmed the whole stream
    UNDELIVERED = "undelivered"  # stopped, and not confirmed within finish_timeout_s
    FAILED = "failed"  # what only a person can fix, or reconnect_timeout_s passed


#: States that end a stream (:meth:`SenderProtocol.retry` leaves UNDELIVERED again).
ENDED = (State.CONFIRMED, State.UNDELIVERED, State.FAILED)


class Note(Enum):
    """What a :class:`Notice` is about; the shell words it (a log line, a status)."""

    ACCEPTED = "accepted"  # every accept: keep the stream's secret (``accept``)
    WAITED = "waited"  # in after being refused or unreachable for ``seconds``
    RECONNECTED = "reconnected"
    BACKLOG_CUT = "backlog cut"  # a new stream takes at most the receiver's backlog
    FIRST_AUDIO = "first audio"  # audio starts to flow (said once)
    REFUSED = "refused"  # for now: trying again in ``seconds`` (said once per wait)
    UNREACHABLE = "unreachable"  # not reachable yet (said once, before the first accept)
    LINK_LOST = "link lost"  # ``message``; reconnecting
    SILENT = "silent"  # no word from the receiver for ``seconds``: the link is dead


@dataclass(frozen=True)
class Connect:
    """Open a connection; its hello is :meth:`SenderProtocol.hello`, made once the socket
    is open."""


@dataclass(frozen=True)
class Send:
    """Send one binary message (an audio packet) on the current connection."""

    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (the back-off): then :meth:`SenderProtocol.tick`."""

    until: float


@dataclass(frozen=True)
class Close:
    """Close the current connection: with the closing handshake, or (``abort``) drop it at
    once (a dead link; a receiver that may not be reading)."""

    abort: bool = False


@dataclass(frozen=True)
class Notice:
    kind: Note
    seconds: float = 0.0
    samples: int = 0
    message: str = ""
    error: TransportError | None = None
    accept: Accept | None = None


@dataclass(frozen=True)
class Finish:
    """The stream is over for this sender: ``state`` is CONFIRMED, UNDELIVERED or FAILED
    (then ``error`` says why). ``ended``: the receiver has ended the stream (confirmed it,
    or closed it for good), so there is nothing left to resume or end later."""

    state: State
    report: SenderReport
    error: TransportError | None = None
    ended: bool = False


Action: TypeAlias = Connect | Send | Wait | Close | Notice | Finish


@dataclass(frozen=True)
class LinkPolicy:
    """How a sender treats its link: the ``micwire send`` options, or the page's numbers."""

    #: For messages: "the receiver at URL".
    url: str = ""
    #: Reconnect after a connection is lost (the receiver resumes the same recording).
    reconnect: bool = True
    #: Give up when no connection could be made for this long; None: never.
    reconnect_timeout_s: float | None = None
    #: Once stopped, how long the rest may take to be delivered and confirmed.
    finish_timeout_s: float = 5.0
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    retry_after_max_s: float = RETRY_AFTER_MAX_S
    silence_timeout_s: float = SILENCE_TIMEOUT_S
    opus_prime_s: float = OPUS_PRIME_S
    #: A stream the receiver can resume (it gave a secret) keeps trying even after an error
    #: only a person can fix (a bad token, a refusal for good): the spool holds its audio,
    #: and the receiver may be put right. Else such an error ends it, as it ends a first
    #: connection.
    retry_final_errors_when_resuming: bool = True


@dataclass
class _Connection:
    """One accepted connection: a codec stream of its own."""

    version: int  # the receiver's protocol version (1: no acks to watch)
    cursor: int  # timeline position up to which the spool has been read
    grid: int  # frames start here, and every frame_samples on from it
    framer: Framer
    packetizer: Packetizer
    heard: float  # when the receiver last said anything
    acknowledged_at_start: int
    done: Done | None = None
    last_sent: bool = False  # the LAST packet has been handed out


class SenderProtocol:
    """One stream, from the first connection to the receiver's ``done``."""

    def __init__(
        self,
        name: str,
        params: StreamParams,
        spool: AudioSpool,
        encoders: Callable[[], Encoder],
        *,
        stream_id: str,
        software: str,
        random: Callable[[], float],
        policy: LinkPolicy | None = None,
        ending: ResumeEntry | None = None,
    ) -> None:
        """``encoders`` makes each connection's encoder (a codec stream cannot be
        rewound); ``random`` gives numbers in [0, 1) for back-off jitter."""
        self.name = name
        self.params = params
        self.spool = spool
        self.policy = policy or LinkPolicy()
        self.report = SenderReport(rate_hz=params.rate_hz)
        self.state = State.IDLE
        self.stream_id = stream_id
        self._software = software
        self._encoders = encoders
        self._random = random
        self._ending = ending
        self._losses = Losses()  # report.link_lost_samples, each sample counted once
        self._conn: _Connection | None = None
        self._secret = ""
        self._start_us = 0
        self._accepted = False  # the receiver has accepted the stream once
        self._announced = False
        #: Furthest timeline position read for sending on any connection.
        self.sent_to = 0
        #: Connections tried since the last accept.
        self.attempt = 0
        self._delay_s = self.policy.backoff_first_s
        self._failing_since: float | None = None
        self._waiting_since: float | None = None  # not in yet, and said so (once)
        self._told: Note | None = None  # what kind of wait the user has been told of
        #: When the back-off ends (WAITING).
        self.retry_at: float | None = None
        #: Capture is over (the spool is closed).
        self.stopped = False
        self._finish_by: float | None = None

    @classmethod
    def ending(
        cls,
        entry: ResumeEntry,
        encoder: Encoder,
        *,
        software: str,
        done_timeout_s: float,
        url: str = "",
    ) -> SenderProtocol:
        """The protocol of a new process of a sender that ends the stream its earlier
        process left (PROTOCOL.md §5, "A sender that restarted"): one connection, a
        restarted hello, the LAST packet at the accept's resume point, then ``done`` within
        ``done_timeout_s``. No audio of its own; any failure ends it."""
        spool = Spool(1, entry.params.rate_hz)
        spool.close()
        policy = LinkPolicy(url=url, reconnect=False, finish_timeout_s=done_timeout_s)
        protocol = cls(
            entry.stream,
            entry.params,
            spool,
            lambda: encoder,
            stream_id=entry.stream_id,
            software=software,
            random=lambda: 0.5,
            policy=policy,
            ending=entry,
        )
        protocol.stopped = True
        return protocol

    # --- what the shell reads ---------------------------------------------------------
    @property
    def acknowledged(self) -> int:
        """The receiver has recorded everything before this position."""
        return self.report.acknowledged

    @property
    def cursor(self) -> int | None:
        """How far the current connection has read the spool (None: no connection)."""
        return self._conn.cursor if self._conn is not None else None

    @property
    def resume_secret(self) -> str:
        """What proves a resuming connection is this stream's own ("" until an accept
        gave one)."""
        return self._secret

    @property
    def start_time_us(self) -> int:
        """When sample 0 was captured (wall clock, µs; 0 until known)."""
        return self._start_us

    @property
    def undelivered_samples(self) -> int:
        return max(0, self.spool.end - self.report.acknowledged)

    @property
    def deadline(self) -> float | None:
        """When :meth:`tick` has something to decide (None: nothing is timed)."""
        times = []
        if self.state in ENDED:
            return None
        if self._finish_by is not None:
            times.append(self._finish_by)
        if self.state is State.WAITING and self.retry_at is not None:
            times.append(self.retry_at)
        conn = self._conn
        if conn is not None and conn.version >= 2 and conn.done is None:
            times.append(conn.heard + self.policy.silence_timeout_s)
        return min(times) if times else None

    def hello(self, wall_time: float) -> Hello:
        """The hello for the connection being made, at ``wall_time`` (s since the epoch):
        its clock fields tell the receiver how much audio the sender holds right now."""
        now_us = int(wall_time * 1e6)
        if self._ending is not None:
            return self._ending.ending_hello(now_us, self._software)
        if not self._start_us:  # nothing captured yet: sample 0 is about to be
            self._start_us = now_us
        # what this hello offers stays until the receiver says where it starts (spool.py)
        self.spool.hold(self.spool.start)
        return Hello(
            self.name,
            self.params,
            self._start_us,
            now_us,
            self._software,
            stream_id=self.stream_id,
            resuming=bool(self._secret),
            resume_secret=self._secret,
            clock=True,  # the link answers the receiver's pings (sender/link.py)
        )

    # --- events -----------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        if self.state is not State.IDLE:
            return []
        return self._connect()

    def captured(self, now: float, block: Block) -> list[Action]:
        """A block from the source: into the spool (the shell then asks :meth:`writable`)."""
        if not self._start_us:  # when sample 0 was captured
            self._start_us = int((block.capture_time - block.position / self.params.rate_hz) * 1e6)
        self.spool.append(block)
        self.report.samples_captured = self.spool.end
        return []

    def stop(self, now: float) -> list[Action]:
        """Capture is over: deliver the rest, and have it confirmed within
        ``finish_timeout_s``."""
        if self.stopped:
            return []
        self.stopped = True
        self.spool.close()
        self._finish_by = now + self.policy.finish_timeout_s
        return []

    def connected(self, now: float, accept: Accept) -> list[Action]:
        """The receiver accepted the hello: a new codec stream from its resume point."""
        if self.state is not State.CONNECTING:
            return []
        actions: list[Action] = []
        if self._waiting_since is not None:
            actions.append(Notice(Note.WAITED, seconds=now - self._waiting_since))
        self._waiting_since, self._told = None, None
        if self._secret:
            self.report.reconnects += 1
            actions.append(Notice(Note.RECONNECTED))
        first, self._accepted = not self._accepted, True
        start = accept.resume_timestamp
        # a new stream takes at most the receiver's backlog (PROTOCOL.md §5): audio captured
        # before where the receiver starts it will never be recorded. Counted as lost, so
        # that "nothing lost" stays true (a sender kept waiting for minutes, e.g. while its
        # name was held)
        acknowledged = self.report.acknowledged
        skipped = min(start or 0, self.spool.end) - acknowledged
        if first and skipped > 0:
            self._lost(acknowledged, acknowledged + skipped)
            actions.append(Notice(Note.BACKLOG_CUT, samples=skipped))
        self._secret = accept.resume_secret or self._secret
        self.report.stream, self.report.recording = accept.stream, accept.recording
        actions.append(Notice(Note.ACCEPTED, accept=accept))
        self.attempt = 0
        if start is None:  # the receiver knows nothing of us: resend all not acknowledged
            start = acknowledged
        if start < self.sent_to:
            self.report.resent_samples += self.sent_to - start
        pcm = self.params.codec == "pcm"
        framer = Framer(
            self.params.frame_samples,
            self.params.channels,
            self.params.rate_hz,
            fill_gaps=not pcm,
            partial=pcm,
        )
        cursor = start
        if not pcm and self._ending is None:
            # warm the codec up on audio the spool has, from where the capture's frames are
            prime = round(self.policy.opus_prime_s * self.params.rate_hz)
            cursor = codec_origin(start, self.spool.start, self.params.frame_samples, prime)
            self._lost(start, self.spool.start)  # gone before the receiver had it
        packetizer = Packetizer(self._encoders(), origin=cursor)
        self.spool.hold(cursor)  # until this connection has caught up (writable)
        self._conn = _Connection(
            accept.version, cursor, cursor, framer, packetizer, now, acknowledged
        )
        self.state = State.STREAMING
        if self._ending is not None:  # its LAST packet goes out now: done is due from here
            self._finish_by = now + self.policy.finish_timeout_s
        return actions

    def connect_failed(self, now: float, error: TransportError) -> list[Action]:
        """No connection: wait and try again, or give up if waiting cannot help."""
        if self.state is not State.CONNECTING:
            return []
        self.spool.hold(None)
        refused = isinstance(error, RefusedError)
        policy = self.policy
        if self._ending is not None:
            return self._fail(error)
        # a first connection gives up at once only on what waiting cannot fix
        if not error.retry and (not self._secret or not policy.retry_final_errors_when_resuming):
            return self._fail(error)
        if not policy.reconnect and not (refused and error.retry):
            return self._fail(error)
        if self._failing_since is None:
            self._failing_since = now
        give_up = policy.reconnect_timeout_s
        if give_up is not None and now - self._failing_since > give_up:
            again = " again" if self._secret else ""
            undelivered_s = self.undelivered_samples / self.params.rate_hz
            return self._fail(
                TransportError(
                    f"could not reach the receiver at {policy.url}{again} within {give_up:g} s "
                    f"({error}); {undelivered_s:.1f} s of audio were not delivered"
                )
            )
        wait = self._delay_s * (0.5 + self._random())
        if isinstance(error, RefusedError) and error.retry_after_s is not None:
            # a name held until then: no use asking before (jitter: not all at once)
            later = error.retry_after_s + (0.2 + 0.8 * self._random())
            wait = max(wait, min(later, policy.retry_after_max_s))
        if give_up is not None:  # and the last try comes at the deadline
            wait = min(wait, max(0.0, self._failing_since + give_up - now) + 0.05)
        actions = self._tell_waiting(error, wait)
        if self._told is not None and self._waiting_since is None:
            self._waiting_since = now
        self._delay_s = min(policy.backoff_max_s, self._delay_s * 2)
        return [*actions, *self._wait(now + wait)]

    def writable(self, wall_time: float) -> list[Action]:
        """The link takes more: the packets of the next spool block (none: nothing to send
        now); at the end of capture, the packets that end the stream (stamped
        ``wall_time``). The shell asks again while the link keeps taking them."""
        conn = self._conn
        if self.state is not State.STREAMING or conn is None:
            return []
        actions: list[Action] = []
        # a bounded read at a time: catching up a long spool stays linear
        while True:
            oldest = self.spool.start
            blocks = self.spool.read(conn.cursor, self.params.rate_hz // 4)
            if not blocks:
                self.spool.hold(None)  # caught up: the spool's own bound again
                if self.stopped and conn.cursor >= self.spool.end:
                    return actions + self._last_packets(conn, wall_time)
                return actions
            if conn.cursor < oldest and conn.framer.fill_gaps:
                self._skip_frames(conn, oldest)
                continue
            self._lost(conn.cursor, oldest)  # gone before the receiver had it
            if not self._announced:
                self._announced = True
                actions.append(Notice(Note.FIRST_AUDIO))
            block = blocks[0]
            packets = [
                packet
                for chunk in conn.framer.push(block)
                for packet in conn.packetizer.packets(chunk)
            ]
            conn.cursor = block.end
            self.sent_to = max(self.sent_to, conn.cursor)
            if packets:
                self.report.packets_sent += len(packets)
                return actions + [Send(packet.serialize()) for packet in packets]

    def ack(self, now: float, position: int) -> list[Action]:
        """The receiver has recorded everything before ``position``."""
        if self._heard(now) is not None:
            self._acknowledge(position)
        return []

    def done(self, now: float, done: Done) -> list[Action]:
        """The receiver's confirmation after the LAST packet (the first one counts)."""
        conn = self._heard(now)
        if conn is None or conn.done is not None:
            return []
        self._acknowledge(done.timestamp)
        conn.done = done
        return self._confirm(done) if conn.last_sent else []

    def heard(self, now: float) -> list[Action]:
        """Any other message from the receiver: the link is alive."""
        self._heard(now)
        return []

    def closed(self, now: float, code: int | None, reason: str = "") -> list[Action]:
        """The connection ended (``code`` None: without a close frame)."""
        conn = self._conn
        if conn is None or self.state not in (State.STREAMING, State.FINISHING):
            return []
        self._conn = None
        message = closed_message(code, reason)
        if final_close(code) or not self.policy.reconnect or self._ending is not None:
            return self._fail(TransportError(message), ended=final_close(code))
        return [Notice(Note.LINK_LOST, message=message), *self._after_loss(now, conn)]

    def tick(self, now: float) -> list[Action]:
        """Time passed: the finish timeout, the end of a back-off, the silence rule."""
        if self.state in ENDED or self.state is State.IDLE:
            return []
        if self._finish_by is not None and now >= self._finish_by:
            return self._undelivered()
        if self.state is State.WAITING and self.retry_at is not None and now >= self.retry_at:
            return self._connect()
        conn = self._conn
        if conn is not None and conn.version >= 2 and conn.done is None:
            silent = now - conn.heard
            if silent >= self.policy.silence_timeout_s:
                self._conn = None
                lost = closed_message(None, "")
                if not self.policy.reconnect or self._ending is not None:
                    return [Close(abort=True), *self._fail(TransportError(lost))]
                return [
                    Notice(Note.SILENT, seconds=silent),
                    Close(abort=True),
                    Notice(Note.LINK_LOST, message=lost),
                    *self._after_loss(now, conn),
                ]
        return []

    def retry(self, now: float) -> list[Action]:
        """Not confirmed in time, but the spool still has it: another ``finish_timeout_s``."""
        if self.state is not State.UNDELIVERED:
            return []
        self._finish_by = now + self.policy.finish_timeout_s
        self._delay_s = self.policy.backoff_first_s
        self._failing_since = None
        return self._connect()

    # --- the parts ----------------------------------------------------------------------
    def _connect(self) -> list[Action]:
        self.state = State.CONNECTING
        self.retry_at = None
        self.attempt += 1
        return [Connect()]

    def _wait(self, until: float) -> list[Action]:
        self.state = State.WAITING
        self.retry_at = until
        return [Wait(until)]

    def _after_loss(self, now: float, conn: _Connection) -> list[Action]:
        """``conn`` was lost: a new connection at once if it got somewhere, else after a
        back-off, as for a failed connect."""
        self.spool.hold(None)
        self._failing_since = now
        if self.report.acknowledged > conn.acknowledged_at_start:
            self._delay_s = self.policy.backoff_first_s
            return self._connect()
        wait = self._delay_s * (0.5 + self._random())
        self._delay_s = min(self.policy.backoff_max_s, self._delay_s * 2)
        return self._wait(now + wait)

    def _heard(self, now: float) -> _Connection | None:
        conn = self._conn
        if conn is None or self.state not in (State.STREAMING, State.FINISHING):
            return None
        conn.heard = now
        return conn

    def _acknowledge(self, position: int) -> None:
        if position > self.report.acknowledged:
            self.report.acknowledged = position
            self._losses.forget_before(position)

    def _skip_frames(self, conn: _Connection, oldest: int) -> None:
        """Opus: the spool dropped audio this connection had not sent. Go on from the next
        whole frame, as if packets had been lost on the way (the codec runs on, the
        receiver conceals): it records the skipped frames as a gap, exactly as counted
        here. (Frames of coded silence would be recorded as audio, not as a gap.)"""
        frame = self.params.frame_samples
        held = conn.framer.restart()  # a partial frame can no longer be completed
        boundary = oldest + (conn.grid - oldest) % frame
        self._lost(conn.cursor if held is None else held, boundary)
        conn.cursor = boundary

    def _last_packets(self, conn: _Connection, wall_time: float) -> list[Action]:
        """The rest of the framer, and the packets that end the codec stream (LAST)."""
        tail = conn.framer.flush()
        packets = conn.packetizer.packets(tail) if tail is not None else []
        packets += conn.packetizer.finish(wall_time)
        self.report.packets_sent += len(packets)
        conn.last_sent = True
        self.state = State.FINISHING
        actions: list[Action] = [Send(packet.serialize()) for packet in packets]
        if conn.done is not None:  # it came early: as good now
            actions += self._confirm(conn.done)
        return actions

    def _confirm(self, done: Done) -> list[Action]:
        self.report.confirmed = done.timestamp
        self.report.recording = done.recording or self.report.recording
        self.state = State.CONFIRMED
        self._conn = None
        return [Close(), Finish(State.CONFIRMED, self.report, ended=True)]

    def _undelivered(self) -> list[Action]:
        aborted: list[Action] = [Close(abort=True)] if self._conn is not None else []
        self._conn = None
        self.state = State.UNDELIVERED
        self.retry_at = None
        undelivered_s = self.undelivered_samples / self.params.rate_hz
        error = TransportError(
            f"stopped, but the receiver at {self.policy.url} did not confirm the stream "
            f"within {self.policy.finish_timeout_s:g} s; {undelivered_s:.1f} s of audio may "
            "not have been delivered"
        )
        return [*aborted, Finish(State.UNDELIVERED, self.report, error)]

    def _fail(self, error: TransportError, ended: bool = False) -> list[Action]:
        aborted: list[Action] = [Close(abort=True)] if self._conn is not None else []
        self._conn = None
        self.state = State.FAILED
        self.retry_at = None
        return [*aborted, Finish(State.FAILED, self.report, error, ended)]

    def _tell_waiting(self, error: TransportError, wait_s: float) -> list[Action]:
        """Say once why the sender is waiting (not once per try): the receiver refuses the
        stream for now, or (before the stream first got in) cannot be reached."""
        if isinstance(error, RefusedError):
            said = self._told is Note.REFUSED
            self._told = Note.REFUSED
            return [] if said else [Notice(Note.REFUSED, seconds=wait_s, error=error)]
        if self._secret:  # reconnecting: the notice about the lost connection said it
            return []
        said = self._told is Note.UNREACHABLE
        self._told = Note.UNREACHABLE
        return [] if said else [Notice(Note.UNREACHABLE, error=error)]

    def _lost(self, start: int, end: int) -> None:
        """``[start, end)`` will never reach the receiver (counted once, however often a
        connection finds it missing)."""
        self.report.link_lost_samples += self._losses.add(start, end)
