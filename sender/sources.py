"""Where the sender's audio comes from: a PortAudio device, a tone, or a file.

A source hands :class:`~micwire.common.framing.Block` s on one timeline to a *sink*, a
plain function called on the event loop's thread as each block is captured: no task, no
queue between capture and the spool, so a block costs one event-loop wake-up. A device
source is paced by the sound card; tone and file sources pace themselves against an
absolute clock (no drift from sleeping late), so they behave like a live microphone.
"""

from __future__ import annotations

from ..common.errors import ParameterError
from .device import DeviceSource, capture_rates
from .paced import FileSource, PacedSource, ToneSource
from .source import Sink, Source

__all__ = [
    "DeviceSource",
    "FileSource",
    "PacedSource",
    "Sink",
    "Source",
    "ToneSource",
    "capture_rates",
    "open_source",
    "parse_source",
]


def parse_source(spec: str | None) -> tuple[str, str]:
    """``tone:440`` -> ("tone", "440"); ``file:x.wav`` -> ("file", "x.wav"); None -> device."""
    if spec is None:
        return "device", ""
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in ("tone", "file") or not arg:
        raise ParameterError(f"bad --source {spec!r}: use tone:HZ or file:PATH")
    return kind, arg


def open_source(
    spec: str | None,
    device: str | None,
    rate_hz: int,
    channels: int,
    block_samples: int,
    clock_scale: float = 1.0,
    *,
    gather: bool = False,
    whole_frames: bool = False,
    capture_rate_hz: int | None = None,
) -> Source:
    """The source ``spec`` names (None: the input ``device``), at ``rate_hz``; a device is
    opened at ``capture_rate_hz`` (default ``rate_hz``) and converted to ``rate_hz``."""
    kind, arg = parse_source(spec)
    if kind == "tone":
        try:
            frequency = float(arg)
        except ValueError:
            raise ParameterError(f"bad tone frequency {arg!r}: use e.g. tone:440") from None
        return ToneSource(frequency, rate_hz, channels, block_samples, clock_scale)
    if kind == "file":
        return FileSource(arg, rate_hz, channels, block_samples, clock_scale)
    return DeviceSource(
        device,
        rate_hz,
        channels,
        block_samples,
        gather=gather,
        whole_frames=whole_frames,
        capture_rate_hz=capture_rate_hz,
    )
