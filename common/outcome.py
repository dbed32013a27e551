"""How a stream (or one part of its recording) ended: a kind to decide on, and the words
people and the sidecar read (pure).

The words are what docs/PROTOCOL.md §8 documents in a sidecar's ``outcome`` ("complete",
"connection lost (no close frame)", "interrupted (the receiver stopped)", …); the kind is
what the receiver decides by: whether the stream's own sender may come back to continue it
(:attr:`Outcome.resumable`), whether it ended well, whether it is a sender's fault. A
sidecar's words are read back into their kind in one place, :meth:`Outcome.parse`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Ending(enum.Enum):
    OPEN = "open"  # the stream goes on
    RECORDING = "recording"  # a sidecar's word while its part is being recorded
    COMPLETE = "complete"  # the sender's last packet came
    LOST = "lost"  # the link broke, went silent, or closed without the last packet
    INTERRUPTED = "interrupted"  # the receiver stopped (or crashed) while it ran
    RESTARTED = "restarted"  # its sender restarted and ended it (what it lost is lost)
    REFUSED = "refused"  # closed for the sender's fault (a protocol error)
    FAILED = "failed"  # the recording could not be written (a full disk, ...)
    ERROR = "error"  # the receiver's own fault


#: Ways a stream ends that its own sender may come back from.
RESUMABLE = frozenset({Ending.RECORDING, Ending.LOST, Ending.INTERRUPTED})
#: The words a restarted sender's stream ends with.
SENDER_RESTARTED = (
    "ended by its sender, which had restarted (what the earlier sender process had not "
    "delivered is not in the recording)"
)
RECEIVER_STOPPED = "the receiver stopped"
_LOST_WORDS = ("connection lost", "connection closed", "no audio", "sender closed")


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def resumable(self) -> bool:
        """May the stream's own sender come back to continue it?"""
        return self.ending in RESUMABLE

    @property
    def ended_well(self) -> bool:
        """The stream ended as its sender meant it to (its last packet, or its restart)."""
        return self.ending in (Ending.COMPLETE, Ending.RESTARTED)

    def stopped(self) -> Outcome:
        """This outcome once the receiver stopped with the stream still waiting for its
        sender (it stays resumable: a later receiver continues it)."""
        return Outcome(Ending.INTERRUPTED, f"{self.text}; {RECEIVER_STOPPED}")

    @classmethod
    def parse(cls, text: object) -> Outcome:
        """The outcome a sidecar's words say (anything unknown is taken as final)."""
        if not isinstance(text, str):
            return cls(Ending.ERROR, str(text))
        if text in ("open", "recording", "complete"):
            return cls(Ending(text), text)
        if text.endswith(RECEIVER_STOPPED) or text.startswith("interrupted"):
            return cls(Ending.INTERRUPTED, text)
        if text.startswith(_LOST_WORDS):
            return cls(Ending.LOST, text)
        if text == SENDER_RESTARTED:
            return cls(Ending.RESTARTED, text)
        if text.startswith("closed:"):
            return cls(Ending.REFUSED, text)
        if text.startswith(("failed", "recording failed")):
            return cls(Ending.FAILED, text)
        return cls(Ending.ERROR, text)


OPEN = Outcome(Ending.OPEN, "open")
RECORDING = Outcome(Ending.RECORDING, "recording")
COMPLETE = Outcome(Ending.COMPLETE, "complete")
RESTARTED = Outcome(Ending.RESTARTED, SENDER_RESTARTED)
INTERRUPTED = Outcome(Ending.INTERRUPTED, f"interrupted ({RECEIVER_STOPPED})")


def lost(why: str) -> Outcome:
    """The link went: ``connection lost (no close frame)``, ``no audio for 30 s``, …"""
    return Outcome(Ending.LOST, why)


def refused(why: str) -> Outcome:
    """Closed for the sender's fault (a malformed packet, ...)."""
    return Outcome(Ending.REFUSED, f"closed: {why}")


def failed(why: str) -> Outcome:
    """The recording could not be written."""
    return Outcome(Ending.FAILED, f"recording failed: {why}")


def error(why: str) -> Outcome:
    return Outcome(Ending.ERROR, why)
