"""The live figures of a stream: one typed object for every view (terminal table, JSON
lines, metrics, web page). Units are in the field names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StreamFigures:
    time: float  # when these were read, s since the Unix epoch
    stream: str
    peer: str
    codec: str
    rate_hz: int
    channels: int
    state: str  # live, parked (waiting for its sender), ended
    seconds: float  # on the stream's timeline, gaps included
    packets: int
    gaps: int
    gap_samples: int
    duplicate_packets: int
    overlap_samples: int
    reconnects: int
    peak_dbfs: float
    rms_dbfs: float
    #: Capture (sender clock) to arrival (receiver clock): meaningful when the two clocks
    #: are synchronised (NTP), as they are on one machine.
    network_ms: float
    #: Live playback figures (buffer, jitter, drift, glitch counters), when it plays.
    playback: dict[str, Any] = field(default_factory=dict)
    #: Audio received and not yet written to disk (recording only).
    write_backlog_s: float = 0.0
    #: The sender's wall clock minus ours, as its pongs measure it (None: not measured: a
    #: sender that does not answer pings), and the most that can be wrong by.
    sender_clock_offset_ms: float | None = None
    sender_clock_bound_ms: float | None = None

    def line(self) -> dict[str, Any]:
        """Flat, as ``--stats-json`` writes it."""
        data = asdict(self)
        playback = data.pop("playback")
        for key in ("seconds", "peak_dbfs", "rms_dbfs", "network_ms", "write_backlog_s"):
            data[key] = round(data[key], 1 if key.endswith(("_dbfs", "_ms")) else 3)
        data["time"] = round(data["time"], 3)
        return {**data, **playback}
