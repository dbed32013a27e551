"""Turn capture blocks of any size into exact codec frames.

PortAudio hands over blocks of whatever size the host API likes; a codec wants frames of
exactly ``frame_samples``. :class:`Framer` buffers, cuts, and keeps each frame's position
on the stream timeline (``timestamp``, in samples) and its capture time.

A block that starts later than where the previous one ended means samples were lost on
the way (for example a full capture queue dropped them). By default the framer then closes
the partial frame it holds and starts the next frame at the new position, so the
timestamps on the wire tell the receiver exactly how long the gap is. With
``fill_gaps=True`` (used for Opus, whose frames must stay whole and back to back) it fills
the gap with silence instead.

With ``partial=True`` (used for PCM, whose packets may be short) nothing is held back: the
rest of each block leaves as a short frame at once instead of waiting for the next block,
so a sample never waits a whole capture period longer than the one it came in.

:class:`Packetizer` turns frames into wire packets: sequence numbers, flags, and the
``samples`` field that tells the receiver how much decoded audio each packet contributes
once the codec's delay (pre-skip) is taken off the front of the stream.

:class:`HandOff` decides, capture block by capture block, when what a sound card gave is
worth waking the sender's event loop for: a wake-up costs more than the work it brings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from .codecs import Encoder
from .protocol import FLAG_LAST, Packet

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Block:
    """A run of captured samples, shape ``(n, channels)``."""

    position: int  # timeline position of samples[0], in samples per channel
    samples: Samples
    capture_time: float  # wall clock (s since the Unix epoch) when samples[0] was captured

    @property
    def end(self) -> int:
        return self.position + len(self.samples)


@dataclass(frozen=True)
class FrameChunk:
    """A frame ready for the encoder. ``samples`` may be short only at a gap or the end."""

    timestamp: int
    samples: Samples
    capture_time: float


class HandOff:
    """When captured audio goes from the capture thread to the event loop.

    A sound card calls back once per period (a few ms); the sender needs audio a frame at
    a time. With ``whole_frames`` (Opus, which cannot encode a frame before its last
    sample) the audio is handed over as soon as a frame is complete, so no frame waits
    longer than it must. Without (PCM, which may send short packets), it is handed over
    when one more block of the size just seen would no longer fit in a frame: packets of
    up to a frame, each sample held back less than a frame. A frame no longer than a
    block means every block at once (the lowest latency, a wake-up per period).

    Frames are of the stream's timeline. A device that captures at another rate than the
    stream's gives ``ready``: how many samples of the timeline ``n`` captured samples in
    all make (:meth:`micwire.common.capture.CaptureConverter.ready`).
    """

    def __init__(
        self,
        frame_samples: int,
        whole_frames: bool,
        ready: Callable[[int], int] | None = None,
    ) -> None:
        if frame_samples < 1:
            raise ValueError("a frame holds at least one sample")
        self.frame_samples = frame_samples
        self.whole_frames = whole_frames
        self.ready = ready
        self.pending = 0  # captured, not handed over yet
        self._handed = 0  # handed over so far

    def add(self, n: int) -> bool:
        """``n`` more samples captured; True means hand over everything pending now."""
        self.pending += n
        frame = self.frame_samples
        ready = self.ready
        if ready is None:
            if self.whole_frames:
                due = (self._handed + self.pending) // frame > self._handed // frame
            else:
                due = self.pending + n > frame
        elif self.whole_frames:
            due = ready(self._handed + self.pending) // frame > ready(self._handed) // frame
        else:
            due = ready(self._handed + self.pending + n) - ready(self._handed) > frame
        if due:
            self._handed += self.pending
            self.pending = 0
        return due


def codec_origin(start: int, oldest: int, frame_samples: int, prime: int) -> int:
    """Where a fresh encoder starts for a connection that must deliver from ``start``:
    ``prime`` samples earlier to warm it up if the spool (oldest sample ``oldest``) has
    them, on a frame boundary of the capture timeline (where a device's :class:`HandOff`
    completes frames, so no frame waits for a later block), never before ``oldest``."""
    want = max(oldest, start - prime)
    aligned = want - want % frame_samples
    if aligned >= oldest:
        return aligned
    up = oldest + -oldest % frame_samples
    return up if up <= start else oldest


class Framer:
    def __init__(
        self,
        frame_samples: int,
        channels: int,
        rate_hz: int,
        fill_gaps: bool = False,
        partial: bool = False,
    ) -> None:
        if frame_samples < 1 or channels < 1 or rate_hz < 1:
            raise ValueError("frame_samples, channels and rate_hz must be positive")
        if fill_gaps and partial:
            raise ValueError("fill_gaps is for whole frames; partial frames need no filling")
        self.fill_gaps = fill_gaps
        self.partial = partial
        self.frame_samples = frame_samples
        self.channels = channels
        self.rate_hz = rate_hz
        self._buffer = np.zeros((frame_samples, channels), dtype=np.int16)
        self._fill = 0
        self._start = 0  # timeline position of _buffer[0]
        self._start_time = 0.0
        self._next: int | None = None  # where the next block must start to be contiguous
        #: Samples between blocks that never arrived.
        self.gap_samples = 0

    def push(self, block: Block) -> list[FrameChunk]:
        """Add a block; return the frames it completed (possibly none)."""
        if block.samples.ndim != 2 or block.samples.shape[1] != self.channels:
            raise ValueError(
                f"block must have shape (n, {self.channels}), got {block.samples.shape}"
            )
        frames: list[FrameChunk] = []
        if self._next is not None and block.position != self._next:
            if block.position < self._next:
                raise ValueError(
                    f"block at {block.position} overlaps the previous one ({self._next})"
                )
            gap = block.position - self._next
            self.gap_samples += gap
            if self.fill_gaps:
                silence = np.zeros((gap, self.channels), dtype=np.int16)
                start_time = block.capture_time - gap / self.rate_hz
                frames += self.push(Block(self._next, silence, start_time))
            elif self._fill:
                frames.append(self._take())
        if self._fill == 0:
            self._start, self._start_time = block.position, block.capture_time
        data = block.samples
        offset = 0
        while offset < len(data):
            n = min(self.frame_samples - self._fill, len(data) - offset)
            self._buffer[self._fill : self._fill + n] = data[offset : offset + n]
            self._fill += n
            offset += n
            if self._fill == self.frame_samples:
                frames.append(self._take())
                self._start = block.position + offset
                self._start_time = block.capture_time + offset / self.rate_hz
        self._next = block.end
        if self.partial and self._fill:
            frames.append(self._take())
        return frames

    def restart(self) -> int | None:
        """Drop the partial frame held back; the next block starts a new frame wherever
        it is. Returns where the dropped samples started (None: nothing was held)."""
        held = self._start if self._fill else None
        self._fill = 0
        self._next = None
        return held

    def flush(self) -> FrameChunk | None:
        """The partial frame held back, if any (call at the end of the stream)."""
        return self._take() if self._fill else None

    def _take(self) -> FrameChunk:
        chunk = FrameChunk(self._start, self._buffer[: self._fill].copy(), self._start_time)
        self._start += self._fill
        self._start_time += self._fill / self.rate_hz
        self._fill = 0
        return chunk


class Packetizer:
    """Encode frames and wrap them in :class:`Packet` s, in order.

    Codec delay: a decoder's output lags its input by ``encoder.pre_skip`` samples. The
    receiver drops that many samples from the front of the decoded stream; each packet's
    ``samples`` says how many of the decoded samples still left after that belong to the
    stream. At :meth:`finish` the packetizer pads and sends frames of silence until the
    decoder has released every real sample, so the receiver reconstructs exactly the
    samples captured, no more, no fewer.
    """

    def __init__(self, encoder: Encoder, origin: int = 0) -> None:
        """``origin``: the timeline position this codec stream starts at (0 for a new
        stream; where the receiver's recording reaches when a connection resumes it)."""
        self.encoder = encoder
        self.frame_samples = encoder.params.frame_samples
        self.pre_skip = encoder.pre_skip
        self._whole_frames = encoder.params.codec != "pcm"
        self._seq = 0
        self._encoded = 0  # samples fed to the encoder (frames are padded to full size)
        self._released = 0  # samples of real audio the receiver has been told to keep
        self._real = 0  # samples of real audio fed so far
        self._next_ts = origin
        self.finished = False

    def packets(self, chunk: FrameChunk) -> list[Packet]:
        """The packet for one frame."""
        if self.finished:
            raise ValueError("packetizer already finished")
        if chunk.timestamp < self._next_ts:
            raise ValueError(f"frame at {chunk.timestamp} goes back before {self._next_ts}")
        self._real += len(chunk.samples)
        return [self._packet(chunk.timestamp, chunk.samples, chunk.capture_time)]

    def finish(self, capture_time: float) -> list[Packet]:
        """The packets that flush the codec and mark the end of the stream."""
        self.finished = True
        silence = np.zeros((0, self.encoder.params.channels), dtype=np.int16)
        out: list[Packet] = []
        # Opus: frames of silence until every real sample is out of the decoder.
        # PCM (no delay): a single empty packet that carries the end-of-stream flag.
        while self._released < self._real or not out:
            out.append(self._packet(self._next_ts, silence, capture_time))
        out[-1] = replace(out[-1], flags=out[-1].flags | FLAG_LAST)
        return out

    def _packet(self, timestamp: int, samples: Samples, capture_time: float) -> Packet:
        # an Opus packet spans a whole frame of the timeline, padding included
        self._next_ts = timestamp + (self.frame_samples if self._whole_frames else len(samples))
        payload = self.encoder.encode(samples)
        # Opus consumes whole frames (short ones are padded); PCM exactly what it is given
        self._encoded += self.frame_samples if self._whole_frames else len(samples)
        available = min(max(0, self._encoded - self.pre_skip), self._real)
        packet = Packet(
            seq=self._seq,
            timestamp=timestamp,
            samples=available - self._released,
            payload=payload,
            capture_time_us=max(0, int(capture_time * 1e6)),
        )
        self._released = available
        self._seq += 1
        return packet
