"""Jitter buffer for live playback (pure, single-threaded; the caller adds locking).

Frames are pushed with their timeline position (``timestamp`` in samples) as they arrive
from the network; the audio device pulls fixed-size blocks at its own pace. Playback starts
once ``target_samples`` are buffered. When the buffer runs dry the device gets silence, the
underrun is counted and the buffer fills back to the target before playing again. A jump
in timestamps (samples the sender never delivered) is played as silence and counted as
lost. Depth above ``max_samples`` (the receiver stalled, or the sender's clock runs fast)
is cut back to the target by dropping the oldest audio, counted as ``overflow_samples``:
live listening stays live. None of this affects recordings, which are written from the
packets directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


@dataclass
class JitterStats:
    underruns: int = 0
    underrun_samples: int = 0
    late_packets: int = 0
    lost_samples: int = 0
    overflow_samples: int = 0


class JitterBuffer:
    def __init__(self, channels: int, target_samples: int, max_samples: int) -> None:
        if channels < 1 or not 0 <= target_samples < max_samples:
            raise ValueError("need channels >= 1 and 0 <= target_samples < max_samples")
        self.channels = channels
        self.target_samples = target_samples
        self.max_samples = max_samples
        self.stats = JitterStats()
        self._chunks: deque[Samples] = deque()
        self._head = 0  # samples of _chunks[0] already played
        self._depth = 0
        self._write_pos: int | None = None
        self.playing = False
        self.ended = False

    @property
    def depth_samples(self) -> int:
        return self._depth

    def push(self, timestamp: int, samples: Samples) -> None:
        """Add a frame that starts at ``timestamp`` on the stream timeline."""
        if self._write_pos is None:
            self._write_pos = timestamp
        if timestamp < self._write_pos:
            self.stats.late_packets += 1  # overlaps audio already queued or played
            return
        gap = timestamp - self._write_pos
        if gap:
            self.stats.lost_samples += gap
            self._append(np.zeros((min(gap, self.max_samples), self.channels), np.int16))
        self._append(samples)
        self._write_pos = timestamp + len(samples)
        if self._depth > self.max_samples:
            self.stats.overflow_samples += self._discard(self._depth - self.target_samples)

    def finish(self) -> None:
        """No more frames will come: play out what is left without waiting for the target."""
        self.ended = True

    def pull(self, n: int) -> Samples:
        """The next ``n`` samples for the device; silence where there is nothing to play."""
        out = np.zeros((n, self.channels), dtype=np.int16)
        if not self.playing:
            if self._depth == 0 or (self._depth < self.target_samples and not self.ended):
                return out
            self.playing = True
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, len(chunk) - self._head)
            out[filled : filled + take] = chunk[self._head : self._head + take]
            filled += take
            self._consume(take)
        if filled < n:
            self.playing = False
            if not self.ended:
                self.stats.underruns += 1
                self.stats.underrun_samples += n - filled
        return out

    def _append(self, samples: Samples) -> None:
        if len(samples):
            self._chunks.append(samples)
            self._depth += len(samples)

    def _consume(self, n: int) -> None:
        self._head += n
        self._depth -= n
        if self._head == len(self._chunks[0]):
            self._chunks.popleft()
            self._head = 0

    def _discard(self, n: int) -> int:
        dropped = 0
        while dropped < n and self._chunks:
            take = min(n - dropped, len(self._chunks[0]) - self._head)
            self._consume(take)
            dropped += take
        return dropped
