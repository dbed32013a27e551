from __future__ import annotations

from rich.console import Console

from micwire.receiver.display import LiveDisplay


def render(streams: list[dict[str, object]]) -> str:
    console = Console(record=True, width=160)
    console.print(LiveDisplay._table(streams))
    return console.export_text()


def test_live_table_shows_what_a_listener_watches() -> None:
    playing = {
        "stream": "kitchen",
        "codec": "opus",
        "seconds": 12.3,
        "peak_dbfs": -6.2,
        "rms_dbfs": -20.4,
        "gaps": 1,
        "buffer_ms": 31.0,
        "target_ms": 30.0,
        "jitter_ms": 2.5,
        "latency_ms": 41.0,
        "drift_ppm": -212.0,
        "underruns": 2,
        "late_packets": 0,
        "concealed_samples": 480,
    }
    recording_only = {
        "stream": "hall",
        "codec": "pcm",
        "seconds": 3.0,
        "peak_dbfs": -120.0,
        "rms_dbfs": -120.0,
        "gaps": 0,
    }
    text = render([playing, recording_only])
    assert "kitchen" in text and "-6 / -20" in text and "31/30 ms" in text
    assert "41 ms" in text and "-212 ppm" in text and "2 u / 0 late / 480 conc" in text
    assert "hall" in text and "—" in text
    assert "waiting for senders" in render([])


def test_a_name_is_shown_as_text_never_as_markup() -> None:
    for name in ("[/bold]x", "USB mic [/dev/snd/pcmC1D0c]", "[red]fake[/red]"):
        text = render(
            [
                {
                    "stream": name,
                    "codec": "pcm",
                    "seconds": 1.0,
                    "peak_dbfs": -6.0,
                    "rms_dbfs": -9.0,
                    "gaps": 0,
                }
            ]
        )
        assert name in text


def test_a_name_cannot_turn_the_table_around() -> None:
    """A right-to-left override (U+202E) before "gnp.exe" would show the name as
    "exe.png"; the table shows the escape."""
    row = {"codec": "pcm", "seconds": 1.0, "peak_dbfs": -6.0, "rms_dbfs": -9.0, "gaps": 0}
    text = render(
        [
            {"stream": "\u202egnp.exe", **row},
            {"stream": "desk\u200b", **row, "state": "ended"},
        ]
    )
    assert "\\u202Egnp.exe" in text and "\u202e" not in text
    assert "desk\\u200B (ended)" in text and "\u200b" not in text
