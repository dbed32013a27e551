"""Rebuild a stream's sample timeline from its packets (the receiver's pure core).

:class:`Depacketizer` checks each packet of one connection against the stream, decodes it,
takes the codec delay (pre-skip) off the front of the connection's codec stream, keeps
``packet.samples`` of each decoded frame and reports gaps in the timestamps as exact runs
of silence. What comes out, written end to end, is the recording: for PCM it equals the
samples the sender captured, sample for sample, with silence exactly where samples never
arrived.

The timeline is the authority. Every connection is its own codec stream that continues
the timeline at ``start`` (0 for a new stream, where the recording reaches for a resumed
one): audio a packet holds before where the timeline has got to (a duplicate packet, an
overlapping timestamp, a resend from before ``start``) is dropped and counted, never
written twice; a timestamp that jumps ahead leaves exactly that much silence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from .codecs import Decoder
from .errors import FrameError
from .protocol import Packet, StreamParams

Samples = npt.NDArray[np.int16]
#: A piece of the timeline: decoded samples, or a count of samples of silence (a gap).
Segment = Samples | int

#: Longest gap one packet may open, in seconds, whatever the caller's ``limit`` allows.
MAX_GAP_S = 3600


def segment_length(segment: Segment) -> int:
    return segment if isinstance(segment, int) else len(segment)


@dataclass
class AssemblyStats:
    packets: int = 0
    samples: int = 0  # samples this connection added to the timeline, gaps included
    gap_samples: int = 0
    gaps: int = 0
    #: Packets whose audio the timeline already had (sent twice, or resent), dropped.
    duplicate_packets: int = 0
    #: Samples dropped because the timeline already had audio there.
    overlap_samples: int = 0
    #: Packets and samples from before where the connection was accepted, sent on purpose
    #: (a resumed Opus encoder's warm-up): decoded, then dropped. Not duplicates.
    lead_in_packets: int = 0
    lead_in_samples: int = 0

    def __add__(self, other: AssemblyStats) -> AssemblyStats:
        """The counts of two connections of one stream together (a stream's totals are
        the sum over its connections, whichever process had them)."""
        return AssemblyStats(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


class Depacketizer:
    def __init__(
        self,
        params: StreamParams,
        decoder: Decoder,
        start: int | None = 0,
        conceal_frames: int = 0,
        gap_budget: Callable[[], int] | None = None,
    ) -> None:
        #: Timeline position this connection continues from; None: wherever its first
        #: packet starts (a resumed stream this receiver knows nothing of).
        self.start = start
        #: For live playback: stand in for up to this many lost frames with the codec's
        #: concealment (Opus PLC, or FEC from the next packet) instead of silence.
        self.conceal_frames = conceal_frames
        #: How many samples of silence a gap may still open, asked when one opens: silence
        #: costs a sender nothing to demand, so it is bounded by the time that has passed.
        self.gap_budget = gap_budget
        self.params = params
        self.decoder = decoder
        self.stats = AssemblyStats()
        self.ended = False
        self._skip = params.pre_skip  # codec delay still to drop from the decoded stream
        self._last_ts: int | None = None
        #: Timeline position of the next decoded sample (after pre-skip).
        self._decoded = 0
        #: Where the timeline has got to: everything before it has been output.
        self.position = start if start is not None else 0
        # Opus frames always span a whole frame of input, PCM frames exactly their samples
        self._whole_frames = params.codec != "pcm"
        self._next_ts = 0  # where the next packet's timestamp is expected

    def push(self, packet: Packet, limit: int | None = None, allowance: int = 0) -> list[Segment]:
        """Check and decode one packet; return what it adds to the timeline, in order.

        ``limit``: the furthest timeline position the stream may reach now (the receiver's
        wall-clock bound); a packet reaching past it is refused before it costs anything.
        ``allowance``: how much of ``limit`` is margin beyond real time (said in the error).
        """
        if self.ended:
            raise FrameError("packet after the end-of-stream packet")
        packet.check(self.params)
        ts = packet.timestamp
        if self._last_ts is None:  # the codec stream of this connection starts here
            if self.start is None:
                self.start = self.position = ts
            self._decoded = self._next_ts = min(ts, self.position)
        elif ts < self._last_ts:
            raise FrameError(f"timestamp went backwards ({ts} after {self._last_ts})")
        if limit is not None and ts + packet.samples > limit:
            rate = self.params.rate_hz
            ahead = (ts + packet.samples - (limit - allowance)) / rate
            raise FrameError(
                f"timestamp runs {ahead:.3f} s ahead of the stream's real time "
                f"(at most {allowance / rate:g} s is allowed)"
            )
        self._last_ts = ts
        self.ended = packet.last
        self.stats.packets += 1
        if self._whole_frames and ts < self._next_ts:
            # Opus from before where the codec stream is (sent twice, or overlapping): not
            # decoded, which would put the decoder a frame out of step
            self.stats.duplicate_packets += 1
            self.stats.overlap_samples += packet.samples
            return []
        gap = ts - self._next_ts
        if gap > MAX_GAP_S * self.params.rate_hz:
            raise FrameError(f"timestamp jumps {gap / self.params.rate_hz:.0f} s ahead")
        if gap > 0 and self.gap_budget is not None and gap > self.gap_budget():
            raise FrameError(
                f"a gap of {gap / self.params.rate_hz:.1f} s is more silence than the time "
                "since the stream began allows"
            )
        filler = self._fill(gap, packet.payload) if gap > 0 else []
        self._decoded += max(0, gap)
        span = self.params.frame_samples if self._whole_frames else packet.samples
        self._next_ts = max(self._next_ts, ts + span)
        frame = self.decoder.decode(packet.payload)
        if self._skip:
            skip = min(self._skip, len(frame))
            frame, self._skip = frame[skip:], self._skip - skip
        if len(frame) < packet.samples:
            raise FrameError(f"packet claims {packet.samples} samples but decodes to {len(frame)}")
        kept = frame[: packet.samples]
        # Opus audio continues the decoded stream; PCM sits exactly at its timestamp
        at = self._decoded if self._whole_frames else ts
        self._decoded = max(self._decoded, at + len(kept))
        if not filler and at == self.position:  # the usual packet: in order, nothing lost
            n = len(kept)
            if not n:
                return []
            self.stats.samples += n
            self.position = at + n
            return [kept]
        out = self._trim([*filler, kept], at - max(0, gap))
        if packet.samples and all(isinstance(s, int) for s in out):
            if self._whole_frames and at + len(kept) <= (self.start or 0):
                self.stats.lead_in_packets += 1
            else:
                self.stats.duplicate_packets += 1
        return out

    def _trim(self, segments: list[Segment], at: int) -> list[Segment]:
        """``segments`` lie end to end from timeline position ``at``: drop what is before
        ``position`` (the timeline has it already; audio dropped is counted), return the
        rest and advance ``position``."""
        kept: list[Segment] = []
        for segment in segments:
            length = segment_length(segment)
            before = min(length, max(0, self.position - at))
            at += length
            if before:
                if isinstance(segment, int):
                    segment -= before
                else:
                    # only a codec needs a run-up: PCM from before the start is overlap
                    lead = 0
                    if self._whole_frames:
                        lead = min(before, max(0, (self.start or 0) - (at - length)))
                    self.stats.lead_in_samples += lead
                    self.stats.overlap_samples += before - lead
                    segment = segment[before:]
            if not segment_length(segment):
                continue
            if isinstance(segment, int):
                self.stats.gaps += 1
                self.stats.gap_samples += segment
            kept.append(segment)
            self.stats.samples += segment_length(segment)
            self.position = at
        return kept

    def _fill(self, gap: int, next_payload: bytes) -> list[Segment]:
        """What stands in for ``gap`` missing samples: silence (recordings), or for the
        last ``conceal_frames`` whole frames the codec's concealment (live playback)."""
        frame = self.params.frame_samples
        concealed = min(self.conceal_frames, gap // frame) if self.decoder.can_conceal else 0
        out: list[Segment] = [gap - concealed * frame] if gap > concealed * frame else []
        for k in range(concealed):
            last = k == concealed - 1  # the frame just before this packet: FEC can rebuild it
            out.append(self.decoder.conceal(next_payload if last else None))
        return out


@dataclass(frozen=True)
class RealTimeBound:
    """How far a stream's timeline may have got by now: a sender cannot have captured
    audio faster than real time. ``position`` is where the sender said its capture was at
    receiver time ``time`` (s); from there the timeline may grow with the clock (plus
    ``drift`` for clocks that disagree, and ``margin_s``). A packet past :meth:`limit` is
    refused, so a few bytes can never demand hours of silence."""

    rate_hz: int
    position: int
    time: float
    margin_s: float = 2.0
    drift: float = 1e-3

    @property
    def allowance(self) -> int:
        """The margin :meth:`limit` allows beyond real time, in samples."""
        return int(self.rate_hz * self.margin_s)

    def limit(self, now: float) -> int:
        elapsed = max(0.0, now - self.time)
        return self.position + int(self.rate_hz * (elapsed * (1 + self.drift) + self.margin_s))
