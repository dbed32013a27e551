"""What a sender is told to do (:class:`SenderConfig`) and what it did (:class:`SenderReport`,
counted by its connection protocol: common/connection/report.py)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..common.capture import DEFAULT_RATE_HZ
from ..common.connection.report import SenderReport
from ..common.paths import state_home
from ..common.protocol import StreamParams


@dataclass
class SenderConfig:
    url: str
    name: str = field(default_factory=socket.gethostname)
    source: str | None = None  # "tone:HZ", "file:PATH", or None for a PortAudio device
    device: str | None = None
    codec: str = "pcm"
    #: The rate sent. None: 48 kHz, but PCM from a device at the device's rate when it
    #: does not take 48 kHz (common/capture.py); the :class:`Sender` fills in what it chose.
    rate_hz: int | None = None
    channels: int = 1
    frame_ms: float = 20.0
    #: PCM from a device: gather device blocks into packets of up to a frame (a wake-up
    #: per packet instead of per device period; up to a frame more latency). Off, each
    #: block leaves at once. Opus always hands over whole frames, as each completes.
    gather_pcm: bool = False
    bitrate: int = 32000
    application: str = "audio"
    fec: bool = False
    expected_loss_pct: int = 10
    duration_s: float | None = None
    #: Seconds of audio kept for resending after a reconnect, and held while the link is
    #: down; beyond that the oldest is dropped (and recorded as silence).
    spool_s: float = 120.0
    #: Reconnect after a network failure (the receiver resumes the same recording).
    reconnect: bool = True
    #: Give up when no connection could be made for this long; None: never, while still
    #: capturing (the spool keeps the newest audio, what is older is counted as lost).
    reconnect_timeout_s: float | None = None
    #: Once stopped, how long to keep trying to deliver what is left and have the receiver
    #: confirm it; then give up and say how much was not delivered.
    finish_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    #: How long to wait for the receiver's answer to a hello. Longer than the receiver
    #: takes to replace a half-open connection of this stream (at most a few seconds).
    reply_timeout_s: float = 15.0
    #: Shared secret for a receiver started with --token (sent as a Bearer token).
    token: str | None = None
    #: CA bundle to trust for wss:// (default: the system's trust store).
    cafile: Path | None = None
    #: Scales the pacing clock of tone/file sources (tests of clock drift).
    clock_scale: float = 1.0
    #: micwire's state directory: each stream's resume state is kept in it (``resume/``)
    #: until the receiver confirms the stream, so that a restarted sender can end the
    #: stream it left (sender/state.py). None: nowhere.
    state_dir: Path | None = field(default_factory=state_home)

    def params(self) -> StreamParams:
        return StreamParams(
            self.codec, self.rate_hz or DEFAULT_RATE_HZ, self.channels, self.frame_ms, self.bitrate
        ).check()


__all__ = ["SenderConfig", "SenderReport"]
