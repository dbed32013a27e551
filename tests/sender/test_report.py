"""The sender's closing line says what was lost, and where."""

from __future__ import annotations

from micwire.sender.config import SenderReport


def report(**figures: int) -> SenderReport:
    whole = {"samples_captured": 48000, "confirmed": 48000, "acknowledged": 48000}
    return SenderReport(rate_hz=48000, packets_sent=51, **{**whole, **figures})


def test_everything_confirmed_is_nothing_lost() -> None:
    assert report().summary() == (
        "sent 51 packets, 1.00 s of audio (48000 samples), "
        "nothing lost (the receiver confirmed every sample)"
    )


def test_audio_the_device_dropped_is_not_called_nothing_lost() -> None:
    text = report(input_overflows=2).summary()
    assert "nothing lost on the way" in text
    assert "the input device LOST audio 2 time(s) before micwire could read it" in text
