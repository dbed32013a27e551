"""One stream across its connections: a source whose audio goes to its sinks.

A stream is known by its name exactly as sent, and belongs to the sender that proves it
with the resume secret of its first accept (micwire.receiver.registry decides who gets
in). Each connection that carries it is :meth:`attached` as a fresh codec stream from
where the timeline has got to; every packet it reads is checked and placed on the
timeline (common/assembly.py: gaps become exactly that much silence, overlap is dropped,
nothing may run ahead of real time) and handed, as one :class:`~.sinks.Delivery`, to the
stream's sinks: its recording, live playout, browser listeners and meters. What is said
of it (figures, summary line, sidecar) is micwire.receiver.description.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from datetime import datetime, timezone
from typing import Any

from ..common import outcome as outcomes
from ..common.alerts import AlertRules
from ..common.assembly import AssemblyStats, Depacketizer, RealTimeBound
from ..common.clock import ClockOffset
from ..common.codecs import make_decoder
from ..common.errors import StorageError
from ..common.outcome import Outcome
from ..common.protocol import Hello, Packet
from ..common.sidecar import Sidecar
from ..common.stats import StreamFigures
from . import description
from .config import ReceiverConfig
from .listeners import Listeners
from .meters import Meters
from .mixer import Mixers
from .playout import Playout
from .recording import Recording
from .sinks import Delivery
from .storage import Previous, secret_digest

#: Silence a stream may ask for beyond the time since it began.
GAP_MARGIN_S = 2.0


class Attachment:
    """What a stream needs from the connection currently carrying it."""

    def __init__(self, abort: Any) -> None:
        self.abort = abort
        #: Another connection of the same stream took over; this one must leave it alone.
        self.replaced = False
        self.detached = asyncio.Event()
        self.depacketizer: Depacketizer | None = None


def log_key(name: str, stream_id: str) -> str:
    """What a stream's log lines count against (logs.py): its name and its sender's id."""
    return f"{name}/{stream_id}"


class Stream:
    def __init__(
        self,
        config: ReceiverConfig,
        hello: Hello,
        peer: str,
        secret: str,
        origin: int | None,
        bound: RealTimeBound,
        previous: Previous | None = None,
        mixers: Mixers | None = None,
        alert_rules: AlertRules | None = None,
    ) -> None:
        self.config = config
        self.name = hello.stream
        self.params = hello.params
        self.stream_id = hello.stream_id
        self.protocol = hello.version
        self.secret_sha256 = secret_digest(secret) if secret else ""
        self.peer = peer
        self.software = hello.software
        self.start = datetime.fromtimestamp(hello.start_time_us / 1e6, timezone.utc)
        self.received = datetime.now(timezone.utc)
        #: When the receiver first saw this stream (s since the Unix epoch; carried over
        #: from the sidecar when a restarted receiver continues it).
        self.first_seen = time.time()
        if previous is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                first = datetime.fromisoformat(previous.record.received_utc or "").timestamp()
                self.first_seen = min(self.first_seen, first)
        #: Where the recording starts on the stream's timeline (None: at the first packet).
        self.origin = origin
        #: Where the timeline has got to (what the recording holds or has queued).
        self.position = origin if origin is not None else 0
        self.bound = bound
        self.previous = previous
        self.totals = AssemblyStats()
        #: How the connection of a sender back after the stream ended complete ended.
        self.came_back: Outcome | None = None
        self.state = "live"  # live, parked, ended
        self.outcome = outcomes.OPEN
        self.network_ms = 0.0  # arrival minus capture time of the newest packet
        #: The sender's wall clock against ours (its pongs: common/clock.py), kept over the
        #: stream's connections.
        self.clock = ClockOffset()
        self.attachment: Attachment | None = None
        self.expiry: asyncio.Task[None] | None = None
        #: When its connection broke and it began waiting for its sender (Unix seconds).
        self.parked_at: float | None = None
        self.ended_utc: float | None = None
        # its sinks
        self.recording = Recording(
            config, self.name, self.params, self.start, self._sidecar_about, previous
        )
        self.playout = Playout(self.name, self.params, mixers, config.latency_ms)
        self.listeners = Listeners(self.params)
        self.meters = Meters(self.name, alert_rules or AlertRules())
        # one more than the recording it continues had: the sender reconnected to get here
        self.reconnects = 0 if previous is None else previous.record.reconnects + 1

    @property
    def reconnects(self) -> int:
        """Its sender's reconnections, over every part (the sidecar keeps the count)."""
        return self.recording.reconnects

    @reconnects.setter
    def reconnects(self, count: int) -> None:
        self.recording.reconnects = count

    @property
    def resumable(self) -> bool:
        return bool(self.secret_sha256)

    def proves(self, hello: Hello) -> bool:
        """Is ``hello`` this stream's own sender coming back?"""
        return (
            hello.resuming
            and bool(hello.resume_secret)
            and self.resumable
            and hmac.compare_digest(secret_digest(hello.resume_secret), self.secret_sha256)
            and hello.stream_id == self.stream_id
            and hello.params == self.params
        )

    @property
    def log_key(self) -> str:
        return log_key(self.name, self.stream_id)

    @property
    def ended_before(self) -> bool:
        """Continues a stream that had ended complete: its sender is back only to hear
        that confirmed (the "done" did not reach it), with nothing new to record."""
        return self.previous is not None and self.previous.record.complete and not self.has_audio

    @property
    def shown(self) -> bool:
        """Is this a stream people see (page, /metrics, stats, alerts)? Only once audio
        came, or it continues a recording: a bare hello, or a connection whose first packet
        was malformed, is a connection counted and logged, not a stream listed."""
        return self.has_audio or self.previous is not None

    @property
    def has_audio(self) -> bool:
        return (
            self.recording.part is not None
            or self.totals.samples > 0
            or (
                self.attachment is not None
                and self.attachment.depacketizer is not None
                and self.attachment.depacketizer.stats.samples > 0
            )
        )

    # --- connections ----------------------------------------------------------------------
    def attach(self, attachment: Attachment) -> None:
        """A connection now carries this stream: a fresh codec stream from ``position``."""
        self.attachment = attachment
        self.state = "live"
        start = self.position if self.origin is not None else None
        attachment.depacketizer = Depacketizer(
            self.params, make_decoder(self.params), start, gap_budget=self._gap_budget
        )
        self.playout.start(start)
        self.listeners.restart()  # a new codec stream: listeners reset their decoder

    def _gap_budget(self) -> int:
        """Silence the stream may still ask for: no more than the time since it began
        (plus a margin), less what it had already (a capture queue or a spool that lost
        audio only ever loses real time)."""
        elapsed = time.time() - self.first_seen + GAP_MARGIN_S
        return int(elapsed * self.params.rate_hz) - self.stats().gap_samples

    def detach(self) -> None:
        """The connection is done with the stream; keep its figures."""
        attachment = self.attachment
        if attachment is None:
            return
        if attachment.depacketizer is not None:
            self.totals = self.totals + attachment.depacketizer.stats
        self.attachment = None

    def stats(self) -> AssemblyStats:
        """Totals over every connection so far, the current one included."""
        attachment = self.attachment
        if attachment is None or attachment.depacketizer is None:
            return AssemblyStats(**vars(self.totals))
        return self.totals + attachment.depacketizer.stats

    async def on_packet(self, packet: Packet) -> bool:
        """Place a packet on the timeline and hand it to the sinks; True if it was the
        stream's last. Raises ProtocolError (the sender's fault) or StorageError."""
        attachment = self.attachment
        assert attachment is not None and attachment.depacketizer is not None
        now = time.monotonic()
        if packet.capture_time_us:
            self.network_ms = time.time() * 1000 - packet.capture_time_us / 1000
        depacketizer = attachment.depacketizer
        segments = depacketizer.push(packet, self.bound.limit(now), self.bound.allowance)
        if self.origin is None:
            self.origin = depacketizer.start
        delivery = Delivery(packet, segments, depacketizer.position, now)
        if self.listeners:
            self.listeners.deliver(delivery)
        self.meters.deliver(delivery)
        assert self.origin is not None
        await self.recording.deliver(delivery, self.origin)  # back-pressure: may wait
        self.position = depacketizer.position
        self.playout.deliver(delivery)
        return depacketizer.ended

    # --- the end ----------------------------------------------------------------------------
    async def close(self, outcome: Outcome) -> None:
        """Finalise for good: files, sidecar, playback."""
        self.state = "ended"
        self.outcome = outcome
        self.ended_utc = round(time.time(), 3)
        try:
            if self.ended_before:  # its sidecar already says complete: it stays so
                self.outcome, self.came_back = outcomes.COMPLETE, outcome
            else:
                await self.recording.close(outcome.text)
        except StorageError as exc:
            self.outcome = outcomes.failed(str(exc))
            raise
        finally:
            # the sender's "done" confirms the recording: the sound device plays out and
            # closes in its own time (a stalled sound server must not hold the sender up)
            self.playout.end(drain=outcome.ending is outcomes.Ending.COMPLETE)

    # --- figures: micwire.receiver.description says them ------------------------------------
    def figures(self, window_s: float = 1.0) -> StreamFigures:
        return description.figures(self, window_s)

    @property
    def page_state(self) -> str:
        if self.state == "parked":
            return "reconnecting"
        return self.state

    def check_alerts(self, now: float) -> list[Any]:
        """Once a second: the alert rules on the last second's levels and the state."""
        state = self.state
        if state == "ended":  # ended by its own sender (a restarted one too): not down
            state = "ended_complete" if self.outcome.ended_well else "ended"
        return self.meters.check(now, state)

    @property
    def earlier_samples(self) -> int:
        """The stream's samples in earlier parts (before a restart of the receiver)
        that its own counters do not hold."""
        return self.previous.record.samples if self.previous is not None else 0

    def summary(self) -> str:
        return description.summary(self)

    def _sidecar_about(self) -> Sidecar:
        return description.sidecar_about(self)
