"""The sidecar beside a stream's recordings, as typed values (docs/PROTOCOL.md §8; pure).

A sidecar says what a recording is (stream, format, start, peer), each part (the files a
connection wrote, where on the stream's timeline they start, how many samples, the gaps
where silence stands in for audio that never arrived, how the part ended) and the totals
over the parts. The totals (``files``, ``origin``, ``samples``, ``seconds``, ``gaps``)
are derived from the parts in one place, :meth:`Sidecar.to_json`, never kept apart.

Reading (:meth:`Sidecar.parse`) checks every field a resume relies on and returns None for
any other JSON (a ``*.json`` that is not ours is never taken for a sidecar); a field it does
not know (a newer receiver's) is kept and written back as it was. Reading and writing the
file is the receiver's (receiver/storage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .outcome import INTERRUPTED

#: Still being written: the part's (or stream's) outcome while it records.
RECORDING = "recording"
#: The outcome of a stream that ended with its last packet.
COMPLETE = "complete"
#: Fields derived from the parts: written, never read back.
_DERIVED = ("files", "origin", "samples", "seconds", "gaps")


@dataclass(frozen=True)
class Gap:
    """Silence standing in for ``samples`` that never arrived, from ``at_sample`` on."""

    at_sample: int
    samples: int

    def to_json(self) -> dict[str, int]:
        return {"at_sample": self.at_sample, "samples": self.samples}

    @classmethod
    def parse(cls, data: Any) -> Gap | None:
        if not isinstance(data, Mapping):
            return None
        at, samples = data.get("at_sample"), data.get("samples")
        if type(at) is not int or type(samples) is not int:
            return None
        return cls(at, samples)


@dataclass
class SidecarPart:
    """One part of a recording: what one connection (or one receiver run) wrote.
    ``gaps`` count from the part's first sample."""

    files: list[str]
    origin: int
    samples: int
    gaps: list[Gap] = field(default_factory=list)
    outcome: str | None = RECORDING

    @property
    def end(self) -> int:
        """Where the part ends on the stream's timeline."""
        return self.origin + self.samples

    def to_json(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "origin": self.origin,
            "samples": self.samples,
            "gaps": [gap.to_json() for gap in self.gaps],
            "outcome": self.outcome,
        }

    @classmethod
    def parse(cls, data: Any) -> SidecarPart | None:
        if not isinstance(data, Mapping):
            return None
        files, origin, samples = data.get("files"), data.get("origin"), data.get("samples")
        if not isinstance(files, list) or type(origin) is not int or type(samples) is not int:
            return None
        gaps = [gap for gap in map(Gap.parse, data.get("gaps") or []) if gap is not None]
        outcome = data.get("outcome")
        return cls(
            [name for name in files if isinstance(name, str)],
            origin,
            samples,
            gaps,
            outcome if isinstance(outcome, str) else None,
        )


@dataclass
class Sidecar:
    """A stream's recording: what it is, and its parts (at least one)."""

    stream: str
    stream_id: str
    resume_secret_sha256: str
    parts: list[SidecarPart]
    codec: str | None = None
    rate_hz: int | None = None
    channels: int | None = None
    start_utc: str | None = None
    #: When the receiver first saw the stream (ISO 8601; kept over a receiver restart).
    received_utc: str | None = None
    peer: str | None = None
    #: Where the stream's wall-clock bound stood: a timeline position and its Unix time.
    clock_position: int | None = None
    clock_utc: float | None = None
    #: The stream's outcome: its latest part's, or how a stream a restarted receiver
    #: continued without new audio ended.
    outcome: str | None = RECORDING
    #: How often the sender reconnected, counting on over the parts.
    reconnects: int = 0
    #: Every other field, as given or read (frame_ms, software, receiver, and fields of a
    #: newer receiver), written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        """Samples over all the parts."""
        return sum(part.samples for part in self.parts)

    @property
    def files(self) -> list[str]:
        return [name for part in self.parts for name in part.files]

    @property
    def complete(self) -> bool:
        """Did the stream end with its last packet (its sender may come back only to hear
        that confirmed)?"""
        return self.parts[-1].outcome == COMPLETE

    @property
    def clock(self) -> tuple[int, float] | None:
        """(timeline position, Unix time) of the stream's wall-clock bound, if kept."""
        if self.clock_position is None or self.clock_utc is None:
            return None
        return self.clock_position, self.clock_utc

    def matches(self, codec: str, rate_hz: int, channels: int) -> bool:
        """Is the recording in this format (can a stream in it continue it)?"""
        return (self.codec, self.rate_hz, self.channels) == (codec, rate_hz, channels)

    def interrupted(self) -> None:
        """Its latest part, still said to be recording, was cut off (a crash, a stop)."""
        if self.parts[-1].outcome in (None, RECORDING):
            self.parts[-1].outcome = INTERRUPTED.text
        if self.outcome in (None, RECORDING):
            self.outcome = INTERRUPTED.text

    def to_json(self) -> dict[str, Any]:
        """The sidecar as written (§8): what it is, the totals over the parts, the parts."""
        first = self.parts[0].origin
        samples = self.samples
        described = {
            "stream": self.stream,
            "stream_id": self.stream_id,
            "start_utc": self.start_utc,
            "received_utc": self.received_utc,
            "codec": self.codec,
            "peer": self.peer,
            "resume_secret_sha256": self.resume_secret_sha256,
            "clock_position": self.clock_position,
            "clock_utc": self.clock_utc,
            "rate_hz": self.rate_hz,
            "channels": self.channels,
        }
        data: dict[str, Any] = {k: v for k, v in described.items() if v is not None}
        data.update(self.extra)
        data.update(
            {
                "files": self.files,
                "origin": first,
                "samples": samples,
                "seconds": round(samples / self.rate_hz, 6) if self.rate_hz else None,
                "gaps": [
                    Gap(part.origin - first + gap.at_sample, gap.samples).to_json()
                    for part in self.parts
                    for gap in part.gaps
                ],
                "outcome": self.outcome,
                "reconnects": self.reconnects,
                "parts": [part.to_json() for part in self.parts],
            }
        )
        return data

    @classmethod
    def parse(cls, data: Any) -> Sidecar | None:
        """The sidecar in ``data`` (parsed JSON), or None if it is not one of ours with
        every field a resume relies on."""
        if not isinstance(data, Mapping):
            return None
        raw_parts = data.get("parts")
        if not isinstance(raw_parts, list) or not raw_parts:
            return None
        parts = [SidecarPart.parse(part) for part in raw_parts]
        stream, stream_id = data.get("stream"), data.get("stream_id")
        digest = data.get("resume_secret_sha256")
        if not (isinstance(stream, str) and isinstance(stream_id, str) and isinstance(digest, str)):
            return None
        typed = {
            "codec": _typed(data, "codec", str),
            "rate_hz": _typed(data, "rate_hz", int),
            "channels": _typed(data, "channels", int),
            "start_utc": _typed(data, "start_utc", str),
            "received_utc": _typed(data, "received_utc", str),
            "peer": _typed(data, "peer", str),
            "clock_position": _typed(data, "clock_position", int),
            "clock_utc": _typed(data, "clock_utc", float),
            "outcome": _typed(data, "outcome", str),
        }
        reconnects = data.get("reconnects")
        known = {"stream", "stream_id", "resume_secret_sha256", "parts", "reconnects"}
        known |= typed.keys() | set(_DERIVED)
        checked = [part for part in parts if part is not None]
        if len(checked) != len(parts):
            return None
        return cls(
            stream,
            stream_id,
            digest,
            checked,
            # 0 in a sidecar from before reconnections were kept
            reconnects=reconnects if type(reconnects) is int and reconnects >= 0 else 0,
            extra={k: v for k, v in data.items() if k not in known},
            **typed,
        )


def _typed(data: Mapping[str, Any], key: str, kind: type) -> Any:
    """``data[key]`` if it is of ``kind`` (exactly: a bool is not an int), else None."""
    value = data.get(key)
    return value if type(value) is kind else None
