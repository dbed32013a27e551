"""A stream's live playout: the sink whose queue is the jitter buffer.

It joins its output device's mix (micwire.receiver.mixer) when a connection of the stream
starts, feeds it what each packet adds to the timeline and leaves when the stream waits for
its sender or ends. For a codec with concealment (Opus) it decodes the packets itself,
so a lost frame is played as the codec's concealment (PLC, or FEC from the next packet)
while the recording keeps exact silence there. Its glitch counters add up over the
stream's connections (each joins the mix afresh).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..common.assembly import Depacketizer, Segment, segment_length
from ..common.codecs import make_decoder
from ..common.errors import DeviceError
from ..common.protocol import StreamParams
from .mixer import Mixers
from .sinks import Delivery
from .voice import Voice

log = logging.getLogger("micwire.receiver")
#: Lost frames played as codec concealment before live playback falls back to a fade.
LIVE_CONCEAL_FRAMES = 5
#: Live-playback counters that add up over a stream's connections.
COUNTERS = (
    "underruns",
    "underrun_samples",
    "late_packets",
    "late_samples",
    "lost_samples",
    "skipped_samples",
    "start_skipped_samples",
    "concealed_samples",
    "device_underflows",
    "callback_errors",
)


class Playout:
    def __init__(
        self, stream: str, params: StreamParams, mixers: Mixers | None, latency_ms: float
    ) -> None:
        self.stream = stream
        self.params = params
        #: None: nothing plays (no device, or it could not play this stream).
        self.mixers = mixers
        self.latency_ms = latency_ms
        self.playback: Voice | None = None
        self._live: Depacketizer | None = None
        self._totals: dict[str, int] = {}
        self._closing: asyncio.Future[None] | None = None
        self._errors_seen = 0
        #: Set once the stream has ended: its device played out and closed.
        self.stopped: asyncio.Future[None] | None = None

    def start(self, position: int | None) -> None:
        """A connection of the stream starts a fresh codec stream at ``position`` (None:
        wherever its first packet is)."""
        if self.mixers is not None and self.playback is None:
            self._errors_seen = 0
            try:
                self.playback = self.mixers.voice(
                    self.stream, self.params.rate_hz, self.params.channels, self.latency_ms
                )
            except DeviceError as exc:
                self.mixers = None
                log.warning("stream %r: playback off: %s", self.stream, exc)
        self._live = None
        if self.playback is not None:
            decoder = make_decoder(self.params)
            if decoder.can_conceal:
                self._live = Depacketizer(
                    self.params, decoder, position, conceal_frames=LIVE_CONCEAL_FRAMES
                )

    def deliver(self, delivery: Delivery) -> None:
        playback = self.playback
        if playback is None:
            return
        live: list[Segment] = (
            self._live.push(delivery.packet) if self._live is not None else delivery.segments
        )
        at = delivery.end - sum(
            segment_length(s) for s in live
        )  # it ends where the recording's does
        for segment in live:
            if not isinstance(segment, int):
                playback.push(at, segment)
            at += segment_length(segment)

    async def stop(self, drain: bool = False) -> None:
        """Leave the mix (after playing out what is buffered, if ``drain``)."""
        if self.playback is not None:
            playback, self.playback = self.playback, None
            self._closing = asyncio.ensure_future(playback.close(drain=drain))
            await self._closing
            last = playback.snapshot()
            for key in COUNTERS:  # a stream's glitches add up over its connections
                self._totals[key] = self._totals.get(key, 0) + last[key]

    def end(self, drain: bool) -> None:
        """The stream ended: its device plays out and closes in its own time (a stalled
        sound server must not hold up the sender's confirmation); ``stopped`` says when."""
        self.stopped = asyncio.ensure_future(self.stop(drain=drain))

    async def settle(self) -> None:
        """Wait until a device being closed is closed (before opening another)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    def report_errors(self) -> None:
        """Say so when the device's callback failed (it played silence and went on)."""
        playback = self.playback
        if playback is not None and playback.callback_errors > self._errors_seen:
            log.warning(
                "stream %r: live playback failed %d time(s) (played silence): %s",
                self.stream,
                playback.callback_errors - self._errors_seen,
                playback.last_callback_error,
            )
            self._errors_seen = playback.callback_errors

    def figures(self, network_ms: float) -> dict[str, Any]:
        """Buffer, jitter, drift and glitch figures while it plays (empty otherwise);
        ``latency_ms`` adds the network's part, ``network_ms``."""
        playback = self.playback
        if playback is None:
            return {}
        figures = playback.snapshot()
        for key, total in self._totals.items():
            figures[key] += total
        figures["latency_ms"] = round(
            network_ms + figures["buffer_ms"] + playback.output_latency_s * 1000, 1
        )
        return figures
