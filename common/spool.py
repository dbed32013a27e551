"""The sender's memory of what it captured, by timeline position, bounded in time.

Capture appends :class:`~micwire.common.framing.Block` s as they come; whatever connection
is up reads from any position it needs: the newest audio as it arrives, or, after a
reconnect, everything from where the receiver's recording ends. Audio is kept as PCM, so a
resumed connection can encode it afresh (an Opus encoder's state cannot be rewound).

The bound is in samples (``capacity_samples``), whatever the size of the blocks a device
delivers: when full, the oldest audio goes. Audio evicted before any connection read it is
simply not there when asked for; the reader sees a later position and counts the loss.

The sender's connection protocol (common/connection/sender.py) reaches its spool only
through :class:`AudioSpool`: ``append``, ``read(from, n)``, ``start``, ``end``, ``hold``
and ``close``. :class:`Spool` keeps the audio in memory; a disk-backed spool (a local take
that reaches back hours, not ``--spool-s`` seconds) can implement the same six and take its
place, with no change to the protocol.

``hold`` is for the handshake: what the hello offered (a receiver starts a new stream at
most its backlog before the hello's time) stays until the receiver has said where to
start, even if capture fills the spool meanwhile. Without it, a handshake slower than
capture's latency lost the oldest audio of a full spool between hello and answer (a gap at
the start of the recording).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from .framing import Block

#: How far a hold may take a spool past its capacity (a handshake lasts seconds).
HOLD_MAX_S = 30.0


class AudioSpool(Protocol):
    """What a sender's connection protocol needs of the audio it captured: by timeline
    position, whatever keeps it (memory, a file)."""

    @property
    def start(self) -> int:
        """Position of the oldest sample still held (``end`` when nothing is)."""
        ...

    @property
    def end(self) -> int:
        """Position after the newest sample appended."""
        ...

    def append(self, block: Block) -> None:
        """Keep a block captured at or after ``end``."""
        ...

    def read(self, position: int, max_samples: int | None = None) -> list[Block]:
        """The audio held from ``position`` on, at most ``max_samples`` of it; what is no
        longer held is not there (the first block may start later than ``position``)."""
        ...

    def hold(self, position: int | None) -> None:
        """Keep the audio from ``position`` on even past the spool's bound (by at most
        :data:`HOLD_MAX_S`), until released with ``None``."""
        ...

    def close(self) -> None:
        """Capture is over: nothing more will be appended."""
        ...


class Spool:
    """:class:`AudioSpool` in memory: the last ``capacity_samples`` samples."""

    def __init__(self, capacity_samples: int, rate_hz: int) -> None:
        if capacity_samples < 1 or rate_hz < 1:
            raise ValueError("a spool must hold at least one sample, at a positive rate")
        self.capacity_samples = capacity_samples
        self.rate_hz = rate_hz
        self._blocks: deque[Block] = deque()
        self._held = 0  # samples in _blocks
        #: Position after the newest sample appended (gaps between blocks included).
        self.end = 0
        #: Capture is over: nothing more will be appended.
        self.closed = False
        self._hold: int | None = None

    @property
    def start(self) -> int:
        """Position of the oldest sample still held (``end`` when empty)."""
        return self._blocks[0].position if self._blocks else self.end

    def __len__(self) -> int:
        """Samples held."""
        return self._held

    def append(self, block: Block) -> None:
        """Add a block at or after ``end`` (a later position: samples lost in capture)."""
        if block.position < self.end:
            raise ValueError(f"block at {block.position} goes back before {self.end}")
        if len(block.samples) == 0:
            return
        self._blocks.append(block)
        self._held += len(block.samples)
        self.end = block.end
        self._trim()

    def hold(self, position: int | None) -> None:
        """Keep the audio from ``position`` on, past the capacity if need be (by at most
        :data:`HOLD_MAX_S` of audio), until released with ``None``."""
        self._hold = position
        self._trim()

    def _trim(self) -> None:
        bound = self.capacity_samples
        if self._hold is not None:
            kept = self.end - self._hold  # at least the samples from there on
            bound = min(max(bound, kept), bound + int(HOLD_MAX_S * self.rate_hz))
        while self._held > bound:
            oldest = self._blocks[0]
            excess = self._held - bound
            if len(oldest.samples) <= excess:
                self._blocks.popleft()
                self._held -= len(oldest.samples)
            else:  # keep the newest part of a large block
                self._blocks[0] = self._tail(oldest, excess)
                self._held -= excess

    def read(self, position: int, max_samples: int | None = None) -> list[Block]:
        """Blocks holding the audio from ``position`` on (cut to start there), at most
        ``max_samples`` of it. What was evicted is not there: the first block may start
        later than ``position``."""
        out: list[Block] = []
        budget = max_samples if max_samples is not None else self._held
        blocks = self._blocks
        # a live connection reads the newest blocks, one catching up the oldest: search
        # from the nearer end (a read stays cheap at both, however long the spool)
        if position - self.start <= self.end - position:
            index = 0
            while index < len(blocks) and blocks[index].end <= position:
                index += 1
        else:
            index = len(blocks)
            while index > 0 and blocks[index - 1].end > position:
                index -= 1
        for k in range(index, len(blocks)):
            if budget <= 0:
                break
            block = blocks[k]
            if block.position < position:
                block = self._tail(block, position - block.position)
            if len(block.samples) > budget:
                block = Block(block.position, block.samples[:budget], block.capture_time)
            out.append(block)
            budget -= len(block.samples)
        return out

    def close(self) -> None:
        self.closed = True

    def _tail(self, block: Block, skip: int) -> Block:
        """``block`` without its first ``skip`` samples."""
        return Block(
            block.position + skip, block.samples[skip:], block.capture_time + skip / self.rate_hz
        )


class Losses:
    """The spans of the timeline found lost (gone from the spool before the receiver had
    them), each sample counted once, however often it is found missing: a connection that
    skips a span the spool dropped can break before the receiver gets past it, and the next
    connection, resuming from where the receiver's recording ends, finds it missing again.
    """

    def __init__(self) -> None:
        self._spans: list[tuple[int, int]] = []  # disjoint, sorted, not touching
        #: Samples counted lost so far.
        self.total = 0

    def add(self, start: int, end: int) -> int:
        """Count ``[start, end)`` lost; return how many of its samples were not yet."""
        if end <= start:
            return 0
        new, low, high, kept = end - start, start, end, []
        for a, b in self._spans:
            if b < start or a > end:
                kept.append((a, b))
            else:  # overlapping or touching: merged
                new -= max(0, min(b, end) - max(a, start))
                low, high = min(low, a), max(high, b)
        kept.append((low, high))
        kept.sort()
        self._spans = kept
        self.total += new
        return new

    def forget_before(self, position: int) -> None:
        """The receiver has everything before ``position``: no span there can be asked
        for again (keeps the list short)."""
        self._spans = [(a, b) for a, b in self._spans if b > position]
