"""What the monitor page and ``/api/streams`` show of a stream (docs/PROTOCOL.md §10): one
typed record, units in the field names, made from the stream's figures (common/stats.py)
and its recording's parts — never from the disk (the writers measure the files)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .stream import Stream


@dataclass
class StreamView:
    stream: str
    peer: str
    codec: str
    rate_hz: int
    channels: int
    frame_ms: float
    #: live, reconnecting (waiting for its sender), ended
    state: str
    #: How it ended ("open" while it runs): the words of the sidecar's ``outcome``.
    outcome: str
    #: On the stream's timeline, gaps and earlier parts included.
    seconds: float
    #: Since the stream was first seen (by this receiver or one before a restart).
    uptime_s: float
    ended_utc: float | None
    #: Over the last 0.2 s; None once it ended (no sound to measure).
    peak_dbfs: float | None
    rms_dbfs: float | None
    packets: int
    gaps: int
    gap_samples: int
    duplicate_packets: int
    reconnects: int
    listeners: int
    #: Live playback's figures; None while it does not play.
    buffer_ms: float | None = None
    target_ms: float | None = None
    jitter_ms: float | None = None
    latency_ms: float | None = None
    drift_ppm: float | None = None
    underruns: int | None = None
    late_packets: int | None = None
    lost_samples: int | None = None
    concealed_samples: int | None = None
    #: The output device it plays on, and whether that plays: playing, stalled (it stopped
    #: asking for audio), gone (it stopped; tried again every few seconds).
    output_device: str | None = None
    output_state: str | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: The recording part by part, its sidecar, and every file in one list (scripts).
    parts: list[dict[str, Any]] = field(default_factory=list)
    sidecar: dict[str, Any] | None = None
    recordings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: The live-playback figures a view carries (when the stream plays).
PLAYBACK = (
    "buffer_ms",
    "target_ms",
    "jitter_ms",
    "latency_ms",
    "drift_ppm",
    "underruns",
    "late_packets",
    "lost_samples",
    "concealed_samples",
    "output_device",
    "output_state",
)


def view_of(stream: Stream, window_s: float) -> StreamView:
    figures = stream.figures(window_s)
    line = figures.line()
    ended = stream.state == "ended"
    end = stream.ended_utc if stream.ended_utc is not None else time.time()
    recording = stream.recording.views()
    return StreamView(
        stream=figures.stream,
        peer=figures.peer,
        codec=figures.codec,
        rate_hz=figures.rate_hz,
        channels=figures.channels,
        frame_ms=stream.params.frame_ms,
        state=stream.page_state,
        outcome=stream.outcome.text,
        seconds=line["seconds"],
        uptime_s=round(end - stream.first_seen, 1),
        ended_utc=stream.ended_utc,
        peak_dbfs=None if ended else line["peak_dbfs"],
        rms_dbfs=None if ended else line["rms_dbfs"],
        packets=figures.packets,
        gaps=figures.gaps,
        gap_samples=figures.gap_samples,
        duplicate_packets=figures.duplicate_packets,
        reconnects=figures.reconnects,
        listeners=len(stream.listeners),
        alerts=[
            {"kind": a.kind, "since": a.since, "message": a.message}
            for a in stream.meters.alerts.active.values()
        ],
        parts=recording["parts"],
        sidecar=recording["sidecar"],
        recordings=recording["recordings"],
        **{key: figures.playback.get(key) for key in PLAYBACK},
    )
