from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from micwire.common.levels import SILENCE_DBFS, peak_dbfs, rms_dbfs
from micwire.common.names import recording_filename, sanitize_stream_name, visible


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("kitchen-mic", "kitchen-mic"),
        ("../../x", "x"),
        ("/etc/passwd", "etc_passwd"),
        ("..", "stream"),
        ("", "stream"),
        (".hidden", "hidden"),
        ("a\x00b\nc", "a_b_c"),
        ("Café Müller", "Café_Müller"),
        ("研究室", "研究室"),
        ("кухня", "кухня"),
        ("a\u202eb", "a_b"),  # a right-to-left override cannot disguise the name
        ("C:\\Windows\\x", "C_Windows_x"),
        ("x" * 500, "x" * 120),
        ("я" * 500, "я" * 60),  # 120 bytes of UTF-8, never half a character
    ],
)
def test_sanitised_names_stay_inside_the_directory(name: str, safe: str) -> None:
    assert sanitize_stream_name(name) == safe


def test_names_that_differ_stay_apart_where_scripts_differ() -> None:
    names = ["кухня", "спальня", "研究室", "会議室", "stream"]
    assert len({sanitize_stream_name(n) for n in names}) == len(names)


def test_recording_filename_uses_utc() -> None:
    start = datetime(2026, 11, 22, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert recording_filename("../mic", start, "mp3") == "mic-20261122T020506Z.mp3"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\u202egnp.exe", "\\u202Egnp.exe"),  # not "exe.png"
        ("kitchen", "kitchen"),
        ("кухня", "кухня"),
        ("研究室 2", "研究室 2"),
        ("Café Müller", "Café Müller"),
        ("C:\\mic", "C:\\mic"),  # a backslash is just a backslash
        ("a\x00b\nc\x1b[31m\x7f\x85\x9f", "a\\u0000b\\u000Ac\\u001B[31m\\u007F\\u0085\\u009F"),
        ("\u061c\u200e\u200f", "\\u061C\\u200E\\u200F"),  # bidi marks
        ("\u202a\u202b\u202c\u202d", "\\u202A\\u202B\\u202C\\u202D"),  # embeddings, overrides
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
        ("a\u200bb\u200cc\u200dd", "a\\u200Bb\\u200Cc\\u200Dd"),  # zero-width
        ("\u2060\u2061\u2062\u2063\u2064\ufeff", "\\u2060\\u2061\\u2062\\u2063\\u2064\\uFEFF"),
        ("a\u2028b\u2029", "a\\u2028b\\u2029"),  # line and paragraph separators
        ("x\U000e0041", "x\\U000E0041"),  # a tag character, beyond the BMP
        ("\ud800", "\\uD800"),  # a lone surrogate (JSON can carry one)
        ("\u3164", "\\u3164"),  # a Hangul filler: a name that looks empty
    ],
)
def test_visible_escapes_what_hides_or_turns_text(name: str, shown: str) -> None:
    assert visible(name) == shown


def test_levels() -> None:
    assert peak_dbfs(np.zeros(10, np.int16)) == SILENCE_DBFS
    assert peak_dbfs(np.array([], np.int16)) == SILENCE_DBFS
    assert rms_dbfs(np.array([], np.int16)) == SILENCE_DBFS
    assert peak_dbfs(np.array([-32768], np.int16)) == pytest.approx(0.0)
    assert peak_dbfs(np.array([16384], np.int16)) == pytest.approx(-6.02, abs=0.01)
    square = np.array([32767, -32768] * 100, np.int16)
    assert rms_dbfs(square) == pytest.approx(0.0, abs=0.001)
    sine = np.rint(np.sin(np.linspace(0, 200 * np.pi, 48000)) * 32767).astype(np.int16)
    assert rms_dbfs(sine) == pytest.approx(-3.01, abs=0.02)


def test_level_meter_reads_a_window_and_reading_steals_nothing() -> None:
    from micwire.common.levels import LevelMeter

    sine = np.rint(np.sin(np.linspace(0, 200 * np.pi, 48000)) * 16384).astype(np.int16)
    meter = LevelMeter(window_s=1.0)
    meter.add(sine[:20000], 10.0)
    meter.add(sine[20000:], 10.4)
    meter.add(np.zeros(0, np.int16), 10.5)
    peak, rms = meter.read(10.5)
    assert peak == pytest.approx(peak_dbfs(sine)) and rms == pytest.approx(rms_dbfs(sine))
    assert meter.read(10.5) == (peak, rms)  # a second view sees the same
    assert meter.read(10.5, window_s=0.2) == pytest.approx(
        (peak_dbfs(sine[20000:]), rms_dbfs(sine[20000:]))
    )
    meter.add(np.zeros(100, np.int16), 12.0)  # a second later: the tone has left the window
    assert meter.read(12.0)[0] == SILENCE_DBFS
