"""What is said of a stream: its figures, its summary line, what its sidecar records.

The figures (:func:`figures`, a typed :class:`~micwire.common.stats.StreamFigures`) are
what the terminal, ``--stats-json``, the page and ``/metrics`` show of a stream each
second; the summary (:func:`summary`) is the line logged when it ends; the sidecar's
description (:func:`sidecar_about`, docs/PROTOCOL.md §8) is what the recording writes
beside its files. Each reads the stream (micwire.receiver.stream) and its sinks' own
figures, and changes nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..common import outcome as outcomes
from ..common.sidecar import Sidecar
from ..common.stats import StreamFigures

if TYPE_CHECKING:
    from .stream import Stream


def figures(stream: Stream, window_s: float = 1.0) -> StreamFigures:
    stats = stream.stats()
    peak, rms = stream.meters.read(window_s)
    return StreamFigures(
        time=time.time(),
        stream=stream.name,
        peer=stream.peer,
        codec=stream.params.codec,
        rate_hz=stream.params.rate_hz,
        channels=stream.params.channels,
        state=stream.state,
        seconds=(stats.samples + stream.earlier_samples) / stream.params.rate_hz,
        packets=stats.packets,
        gaps=stats.gaps,
        gap_samples=stats.gap_samples,
        duplicate_packets=stats.duplicate_packets,
        overlap_samples=stats.overlap_samples,
        reconnects=stream.reconnects,
        peak_dbfs=peak,
        rms_dbfs=rms,
        network_ms=stream.network_ms,
        playback=stream.playout.figures(stream.network_ms),
        write_backlog_s=stream.recording.backlog_s,
        **sender_clock(stream),
    )


def sender_clock(stream: Stream) -> dict[str, float | None]:
    """The sender's clock against ours, in milliseconds (None until measured)."""
    offset, bound = stream.clock.offset_at(time.time()), stream.clock.bound_s
    return {
        "sender_clock_offset_ms": None if offset is None else round(offset * 1000, 2),
        "sender_clock_bound_ms": None if bound is None else round(bound * 1000, 2),
    }


def summary(stream: Stream) -> str:
    stats = stream.stats()
    rate = stream.params.rate_hz
    if stream.ended_before:
        assert stream.previous is not None
        text = (
            f"stream {stream.name!r} from {stream.peer}: its sender came back to hear it "
            f"confirmed; it had ended complete ({stream.previous.record.samples / rate:.2f} s, "
            f"recorded to {', '.join(stream.previous.record.files)})"
        )
        if stream.came_back is not None and stream.came_back != outcomes.COMPLETE:
            text += f"; that connection: {stream.came_back}"  # what went wrong with it
        return text
    text = (
        f"stream {stream.name!r} from {stream.peer}: {stream.outcome}; "
        f"{stats.samples / rate:.2f} s, {stats.packets} packets, {stats.gaps} gaps "
        f"({stats.gap_samples} samples of silence)"
    )
    if stats.duplicate_packets or stats.overlap_samples:
        text += (
            f", {stats.duplicate_packets} duplicate packets "
            f"({stats.overlap_samples} samples already recorded, dropped)"
        )
    if stats.lead_in_packets or stats.lead_in_samples:
        text += (
            f", {stats.lead_in_samples / rate:.2f} s of codec warm-up "
            "before the resume point (decoded, not recorded)"
        )
    if stream.reconnects:
        text += f", {stream.reconnects} reconnects"
    if stream.previous is not None:
        whole = (stats.samples + stream.earlier_samples) / rate
        text += f" (with its earlier parts: {whole:.2f} s)"
    if stream.recording.paths:
        text += ", recorded to " + ", ".join(stream.recording.paths)
    return text


def sidecar_about(stream: Stream) -> Sidecar:
    """What the sidecar says of the stream (docs/PROTOCOL.md §8); its parts are the
    recording's."""
    received = stream.received.isoformat()
    if stream.previous is not None:
        received = stream.previous.record.received_utc or received
    return Sidecar(
        stream.name,
        stream.stream_id,
        stream.secret_sha256,
        parts=[],
        codec=stream.params.codec,
        rate_hz=stream.params.rate_hz,
        channels=stream.params.channels,
        start_utc=stream.start.isoformat(),
        received_utc=received,
        peer=stream.peer,
        clock_position=stream.bound.position,
        clock_utc=time.time() - (time.monotonic() - stream.bound.time),
        extra={
            "frame_ms": stream.params.frame_ms,
            "software": stream.software,
            "receiver": f"micwire/{__version__}",
            **_clock_about(stream),
        },
    )


def _clock_about(stream: Stream) -> dict[str, Any]:
    """The sidecar's ``sender_clock``, once measured: how far the sender's wall clock is
    from the receiver's, how fast it runs, and the most the offset can be wrong by."""
    clock = stream.clock
    offset = clock.offset_at(time.time())
    if offset is None:
        return {}
    rate = clock.rate_ppm
    return {
        "sender_clock": {
            "offset_ms": round(offset * 1000, 3),
            "rate_ppm": None if rate is None else round(rate, 2),
            "bound_ms": round((clock.bound_s or 0.0) * 1000, 3),
            "exchanges": clock.exchanges,
        }
    }
