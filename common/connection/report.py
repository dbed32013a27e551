"""What a sender did: the figures its connection protocol counts (each once), and the
closing line the ``micwire send`` command prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SenderReport:
    stream: str = ""
    recording: str | None = None
    packets_sent: int = 0
    samples_captured: int = 0
    #: Lost from the spool: the link was down longer than it holds (recorded as silence).
    link_lost_samples: int = 0
    #: Timeline position the receiver confirmed at the end (None: no confirmation).
    confirmed: int | None = None
    #: Latest position the receiver acknowledged while streaming.
    acknowledged: int = 0
    reconnects: int = 0
    resent_samples: int = 0
    input_overflows: int = 0
    rate_hz: int = 0

    @property
    def seconds(self) -> float:
        return self.samples_captured / self.rate_hz if self.rate_hz else 0.0

    def summary(self) -> str:
        text = (
            f"sent {self.packets_sent} packets, {self.seconds:.2f} s of audio "
            f"({self.samples_captured} samples)"
        )
        if self.link_lost_samples:
            text += (
                f"; LOST {self.link_lost_samples} samples "
                f"({self.link_lost_samples / (self.rate_hz or 1):.2f} s) that could not "
                "reach the receiver in time (a link down or slower than the stream for "
                "longer than --spool-s; recorded as silence)"
            )
        elif self.confirmed == self.samples_captured:
            on_the_way = " on the way" if self.input_overflows else ""
            text += f", nothing lost{on_the_way} (the receiver confirmed every sample)"
        if self.confirmed is None:
            undelivered = (self.samples_captured - self.acknowledged) / (self.rate_hz or 1)
            text += f"; NOT CONFIRMED by the receiver: {undelivered:.2f} s may be missing"
        if self.reconnects:
            text += (
                f"; {self.reconnects} reconnects, "
                f"{self.resent_samples / (self.rate_hz or 1):.2f} s resent"
            )
        if self.input_overflows:  # the OS/driver lost input before PortAudio handed it over
            text += (
                f"; but the input device LOST audio {self.input_overflows} time(s) before "
                "micwire could read it (input overflow: the machine or its sound server "
                "was too busy)"
            )
        return text
