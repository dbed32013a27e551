"""One sender's connection as the receiver sees it, without I/O: events in, actions out.

The model is websockets' ``protocol.py``: the asyncio shell (micwire.receiver.connection)
reads messages and time and feeds them here; this class decides, and says what to do —
ask for admission, send a reply, hand a packet to the stream, finish or release the stream,
close with a code and a reason. Every odd case is then a plain unit test
(tests/common/test_receiver_connection.py).

Phases: the hello (it must come within ``hello_timeout_s``), admission (the shell asks the
receiver's streams, which may refuse for good, 1008, or for now, 1013), streaming (packets;
an acknowledgement of what is recorded every ``ack_interval_s``; a connection that sends no
audio for ``idle_timeout_s`` is closed, 1013), and the end: the sender's last packet
(finish the stream, confirm with ``done``, close 1000), the link gone (release the stream:
its sender may come back), or the sender's fault (close 1002, release the stream for good).
Whatever happens ends in exactly one :class:`Release` (or :class:`Finish`) of an admitted
stream, with an :class:`~micwire.common.outcome.Outcome` that says how.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .. import outcome
from ..clock import Exchange
from ..errors import MicwireError, ProtocolError
from ..outcome import Outcome
from ..protocol import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REFUSED,
    CLOSE_TRY_AGAIN,
    Accept,
    Ack,
    Done,
    Hello,
    Packet,
    Ping,
    Pong,
    Refuse,
)

#: RFC 6455 §7.4.1: what a library reports when a connection ended without a close frame.
CLOSE_ABNORMAL = 1006


@dataclass(frozen=True)
class Limits:
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    ack_interval_s: float = 1.0
    #: How often a sender that answers pings (its hello's ``clock``) is pinged.
    ping_interval_s: float = 1.0


# --- actions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Admit:
    """Ask the receiver's streams to take the stream ``hello`` names; answer with
    :meth:`ReceiverConnection.admitted` or :meth:`ReceiverConnection.refused`."""

    hello: Hello


@dataclass(frozen=True)
class Send:
    text: str


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Deliver:
    """Hand a packet to the stream; then :meth:`ReceiverConnection.delivered`."""

    packet: Packet


@dataclass(frozen=True)
class Finish:
    """The stream's last packet came: finalise it with ``outcome``; then
    :meth:`ReceiverConnection.finished`."""

    outcome: Outcome


@dataclass(frozen=True)
class Release:
    """The connection is done with its stream: the stream's sender may come back to it
    (``lost``), or it ends with ``outcome``."""

    outcome: Outcome
    lost: bool


@dataclass(frozen=True)
class Clock:
    """A ping answered: one measurement of the sender's clock against this one (the stream
    keeps them: micwire.common.clock)."""

    exchange: Exchange


Action = Admit | Send | Close | Deliver | Finish | Release | Clock

#: A pong for a ping older than this is no measurement (nor one from the future).
PONG_MAX_AGE_S = 30.0
#: How many unanswered pings a pong may still answer.
PINGS_OUTSTANDING = 32


class Phase(enum.Enum):
    HELLO = "hello"
    ADMITTING = "admitting"
    STREAMING = "streaming"
    FINISHING = "finishing"
    DONE = "done"


class ReceiverConnection:
    def __init__(self, now: float, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.phase = Phase.HELLO
        self.hello: Hello | None = None
        self.started = now
        self.last_audio = now
        self._next_ack = now
        self._next_ping = now
        #: Pings sent and not answered yet (their t1_us), the newest few: a pong counts
        #: only for one of them, once.
        self._pings: deque[int] = deque(maxlen=PINGS_OUTSTANDING)
        #: How the connection ended for its stream (once released or finished).
        self.outcome: Outcome | None = None

    @property
    def acks(self) -> bool:
        """Version 1 senders get no acknowledgements (nor ``done``)."""
        return self.hello is not None and self.hello.version >= 2

    # --- events --------------------------------------------------------------------------
    def receive_text(self, text: str, now: float, wall: float | None = None) -> list[Action]:
        """A text message at ``now`` (``wall``: the wall clock then, s since the epoch)."""
        if self.phase is Phase.HELLO:
            try:
                self.hello = Hello.parse(text)
            except MicwireError as exc:
                return self._refuse(str(exc))
            self.phase = Phase.ADMITTING
            return [Admit(self.hello)]
        if self.phase is Phase.STREAMING:
            assert self.hello is not None
            if self.hello.clock:  # its pongs
                return self._pong(text, wall)
            return self._packet(text, now)  # raises: a text message after the hello
        return []

    def _pong(self, text: str, wall: float | None) -> list[Action]:
        try:
            pong = Pong.parse(text)
        except ProtocolError as exc:
            return self.fault(exc)
        t1 = pong.t1_us / 1e6
        if wall is None or pong.t1_us not in self._pings or not wall - PONG_MAX_AGE_S <= t1:
            return []  # not an answer to a ping of ours (or answered already): no measurement
        self._pings.remove(pong.t1_us)
        return [Clock(Exchange(t1, pong.t2_us / 1e6, pong.t3_us / 1e6, wall))]

    def receive_binary(self, data: bytes, now: float) -> list[Action]:
        if self.phase is Phase.HELLO:
            return self._refuse("expected the hello as a text message (JSON)")
        if self.phase is Phase.STREAMING:
            return self._packet(data, now)
        return []

    def _packet(self, data: bytes | str, now: float) -> list[Action]:
        try:
            packet = Packet.parse(data)
        except ProtocolError as exc:
            return self.fault(exc)
        if packet.samples or packet.last:  # empty packets are not audio: no alibi
            self.last_audio = now
        return [Deliver(packet)]

    def admitted(self, accept: Accept, now: float) -> list[Action]:
        self.phase = Phase.STREAMING
        self.last_audio = self._next_ack = now
        return [Send(accept.serialize())]

    def refused(self, reason: str, retry: bool, retry_after_s: float | None = None) -> list[Action]:
        return self._refuse(reason, retry, retry_after_s)

    def _refuse(
        self, reason: str, retry: bool = False, retry_after_s: float | None = None
    ) -> list[Action]:
        self.phase = Phase.DONE
        return [
            Send(Refuse(reason, retry, retry_after_s).serialize()),
            Close(CLOSE_TRY_AGAIN if retry else CLOSE_REFUSED, reason),
        ]

    def delivered(self, ended: bool) -> list[Action]:
        """The stream took the packet; ``ended``: it was the last."""
        if not ended or self.phase is not Phase.STREAMING:
            return []
        self.phase = Phase.FINISHING
        # a restarted sender ends the stream its earlier process left: not complete
        assert self.hello is not None
        return [Finish(outcome.RESTARTED if self.hello.restarted else outcome.COMPLETE)]

    def finished(self, result: Outcome, done: Done | None) -> list[Action]:
        """The stream is finalised: its ``result`` (what it says now) and, if the recording
        holds what it should, the ``done`` that confirms it."""
        self.phase = Phase.DONE
        self.outcome = result
        if done is None:  # finalising failed
            return [Close(CLOSE_INTERNAL_ERROR, result.text)]
        actions: list[Action] = [Send(done.serialize())] if self.acks else []
        reason = "complete" if result.ending is outcome.Ending.COMPLETE else "ended"
        return [*actions, Close(CLOSE_NORMAL, reason)]

    def fault(self, exc: ProtocolError) -> list[Action]:
        """The sender broke the protocol (a malformed packet, ...): its fault, for good."""
        return self._end(outcome.refused(str(exc)), False, Close(CLOSE_PROTOCOL_ERROR, str(exc)))

    def failed(self, result: Outcome, reason: str | None = None) -> list[Action]:
        """The receiver could not go on with the stream (its recording failed, or worse);
        the sender reads ``reason`` (default: the outcome's words)."""
        close = Close(CLOSE_INTERNAL_ERROR, result.text if reason is None else reason)
        return self._end(result, False, close)

    def connection_closed(self, code: int | None, closed_here: int | None = None) -> list[Action]:
        """The connection is gone: the sender's close ``code`` (None: no close frame), and
        the code it was closed with here, if it was."""
        if self.phase in (Phase.HELLO, Phase.ADMITTING, Phase.DONE):
            self.phase = Phase.DONE
            return []
        if self.phase is Phase.FINISHING:  # the finish goes on; the sender hears nothing
            return []
        if code == CLOSE_NORMAL:
            why = "sender closed without end-of-stream"
        elif code is not None:
            why = f"connection closed ({code})"
        elif closed_here not in (None, CLOSE_NORMAL, CLOSE_ABNORMAL):
            why = f"connection closed ({closed_here})"
        else:
            why = "connection lost (no close frame)"
        return self._end(outcome.lost(why), True)

    def tick(
        self, now: float, recorded: int, write_buffered: int, wall: float | None = None
    ) -> list[Action]:
        """Time passes: the idle rule, and an acknowledgement of what is ``recorded`` (not
        while ``write_buffered`` bytes wait for the socket: the link is slow already); a
        ping, stamped ``wall`` (the wall clock, s since the epoch), for a sender that
        answers them."""
        if self.phase is Phase.HELLO:
            if now - self.started >= self.limits.hello_timeout_s:
                return self._refuse(f"no hello within {self.limits.hello_timeout_s:g} s")
            return []
        if self.phase is not Phase.STREAMING:
            return []
        idle = self.limits.idle_timeout_s
        if now - self.last_audio > idle:
            why = f"no audio for {idle:g} s"
            return self._end(outcome.lost(why), True, Close(CLOSE_TRY_AGAIN, why))
        actions: list[Action] = []
        if now >= self._next_ack:
            self._next_ack = now + self.limits.ack_interval_s
            if self.acks and write_buffered < 4096:
                actions.append(Send(Ack(recorded).serialize()))
        assert self.hello is not None
        if self.hello.clock and wall is not None and now >= self._next_ping:
            self._next_ping = now + self.limits.ping_interval_s
            if write_buffered < 4096:  # a ping queued behind audio measures the queue
                t1_us = int(wall * 1e6)
                self._pings.append(t1_us)
                actions.append(Send(Ping(t1_us).serialize()))
        return actions

    def _end(self, result: Outcome, lost: bool, *close: Close) -> list[Action]:
        if self.phase is not Phase.STREAMING:
            return list(close)
        self.phase = Phase.DONE
        self.outcome = result
        return [*close, Release(result, lost)]
