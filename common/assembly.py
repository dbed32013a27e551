"""Rebuild a stream's sample timeline from its packets (the receiver's pure core).

:class:`Depacketizer` checks each packet against the stream, decodes it, takes the codec
delay (pre-skip) off the front of the stream, keeps ``packet.samples`` of each decoded frame
and reports gaps in the timestamps as exact runs of silence. What comes out, written end to
end, is the recording: for PCM it equals the samples the sender captured, sample for
sample, with silence exactly where samples never arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from micwire.common.codecs import Decoder
from micwire.common.errors import FrameError
from micwire.common.protocol import Packet, StreamParams

Samples = npt.NDArray[np.int16]
#: A piece of the timeline: decoded samples, or a count of samples of silence (a gap).
Segment = Samples | int

#: Longest gap one packet may open, in seconds (bounds what a hostile timestamp can cost).
MAX_GAP_S = 3600


@dataclass
class AssemblyStats:
    packets: int = 0
    samples: int = 0  # samples on the timeline so far, gaps included
    gap_samples: int = 0
    gaps: int = 0


class Depacketizer:
    def __init__(
        self,
        params: StreamParams,
        decoder: Decoder,
        origin: int | None = 0,
        conceal_frames: int = 0,
        resume_at: int | None = None,
    ) -> None:
        #: Continue a stream recorded in an earlier part up to this timeline position: the
        #: first packets are resent from before it; what they hold before it is dropped.
        self.resume_at = resume_at
        self._trim = 0
        #: For live playback: stand in for up to this many lost frames with the codec's
        #: concealment (Opus PLC, or FEC from the next packet) instead of silence.
        self.conceal_frames = conceal_frames
        self.params = params
        self.decoder = decoder
        self.stats = AssemblyStats()
        self.ended = False
        #: Sequence number of the packet expected next (what a reconnecting sender resends from).
        self.next_seq = 0
        self._skip = params.pre_skip
        self._last_ts: int | None = None
        # origin None: the timeline starts at the first packet (a stream joined midway)
        self._next_ts = origin if origin is not None else -1
        # Opus frames always span a whole frame of input, PCM frames exactly their samples
        self._whole_frames = params.codec != "pcm"
        self._max_gap = MAX_GAP_S * params.rate_hz

    def push(self, packet: Packet) -> list[Segment]:
        """Check and decode one packet; return what it adds to the timeline, in order."""
        if self.ended:
            raise FrameError("packet after the end-of-stream packet")
        packet.check(self.params)
        out: list[Segment] = []
        if self._last_ts is not None and packet.timestamp < self._last_ts:
            raise FrameError(f"timestamp went backwards ({packet.timestamp} after {self._last_ts})")
        if self.resume_at is not None and self._last_ts is None:
            self._start_resumed(packet)
        if self._next_ts < 0:
            self._next_ts = packet.timestamp
        gap = packet.timestamp - self._next_ts  # the stream starts at its origin (0)
        if gap > self._max_gap:
            raise FrameError(f"timestamp jumps {gap / self.params.rate_hz:.0f} s ahead")
        if gap > 0:
            out += self._fill(gap, packet.payload)
            self.stats.gaps += 1
            self.stats.gap_samples += gap
        frame = self.decoder.decode(packet.payload)
        if self._skip:
            skip = min(self._skip, len(frame))
            frame, self._skip = frame[skip:], self._skip - skip
        if len(frame) < packet.samples:
            raise FrameError(f"packet claims {packet.samples} samples but decodes to {len(frame)}")
        kept = frame[: packet.samples]
        if self._trim:
            drop = min(self._trim, len(kept))
            kept, self._trim = kept[drop:], self._trim - drop
        if len(kept):
            out.append(kept)
        frame_span = self.params.frame_samples if self._whole_frames else packet.samples
        self._last_ts = packet.timestamp
        self._next_ts = max(self._next_ts, packet.timestamp + frame_span)
        self.stats.packets += 1
        self.next_seq = (packet.seq + 1) & 0xFFFFFFFF
        self.stats.samples += sum(s if isinstance(s, int) else len(s) for s in out)
        self.ended = packet.last
        return out

    def _start_resumed(self, packet: Packet) -> None:
        """First packet of a resumed part: line its decoded audio up with ``resume_at``.
        (Mid-stream, an Opus packet's decoded samples start ``pre_skip`` before its
        timestamp; the decoder's initial delay was paid in the earlier part.)"""
        assert self.resume_at is not None
        self._skip = 0
        delay = self.params.pre_skip if self._whole_frames else 0
        start = packet.timestamp - delay  # timeline position of its first decoded sample
        self._next_ts = packet.timestamp
        if start < self.resume_at:
            self._trim = self.resume_at - start
        else:  # the sender no longer has what followed: gap-exact silence
            self._next_ts -= start - self.resume_at

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
