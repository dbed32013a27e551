"""What a stream hands to each of its sinks, and what a sink is.

A stream (micwire.receiver.stream) is a source: each packet its connection reads is
checked and placed on the stream's timeline (common/assembly.py), and the result goes to
every sink — the recording, live playout, browser listeners, the level meters and alerts —
as one :class:`Delivery` (aiortc's MediaRelay: one reader, a queue per consumer). Adding a
consumer is adding a sink. Each sink chooses, and counts, what it does when it cannot
keep up:

- the recording (micwire.receiver.recording) holds back the stream: its queue is bounded
  (10 s of audio), and past that the stream stops reading the sender's socket until the
  disk catches up — nothing is dropped (its ``deliver`` is the only one that waits);
- live playout (micwire.receiver.playout) plays from its jitter buffer: audio too late is
  skipped, a buffer run dry is concealed, both counted;
- each listener (micwire.receiver.listeners) has its own queue of about a second: a slow
  one loses its own oldest packets (counted), one that stops reading is disconnected;
- the meters (micwire.receiver.meters) keep no queue: they fold what they are given.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..common.assembly import Segment, segment_length
from ..common.protocol import Packet


class Delivery(NamedTuple):
    """One packet of a stream, as every sink gets it (immutable: every sink gets the same
    one; a named tuple, made twice as fast as a frozen dataclass, once a packet)."""

    #: The packet as it came (a listener forwards it as it is).
    packet: Packet
    #: What it added to the stream's timeline, in order: audio (int16, frames x channels)
    #: and gaps (an int: that many samples of silence).
    segments: list[Segment]
    #: Timeline position after it.
    end: int
    #: When it arrived (the receiver's monotonic clock, s).
    arrival: float

    @property
    def start(self) -> int:
        """Timeline position of its first segment."""
        return self.end - sum(segment_length(s) for s in self.segments)


class Sink(Protocol):
    def deliver(self, delivery: Delivery) -> None:
        """Take a delivery; never waits (a sink that would, counts instead)."""
        ...
