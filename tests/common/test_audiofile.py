from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import micwire
from micwire import from_bytes, read, to_bytes, write
from micwire.common import audiofile
from micwire.common.audiofile import as_frames
from micwire.common.errors import AudioFormatError


def tone(n: int = 48000, rate: int = 48000, channels: int = 1) -> np.ndarray:
    wave = np.rint(np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 10000).astype(np.int16)
    return np.repeat(wave[:, None], channels, axis=1)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_formats_round_trip_exactly(fmt: str) -> None:
    samples = tone(channels=2)
    data = to_bytes(samples, 48000, fmt)
    back, rate = from_bytes(data)
    assert rate == 48000 and np.array_equal(back, samples)


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_lossy_formats_decode_with_the_right_rate_length_and_content(fmt: str) -> None:
    samples = tone(44100, 44100)
    back, rate = from_bytes(to_bytes(samples, 44100, fmt))
    assert rate == 44100 and back.shape == samples.shape
    assert np.corrcoef(back[2000:-2000, 0], samples[2000:-2000, 0])[0, 1] > 0.95


def test_float_input_is_scaled_and_clipped() -> None:
    back, _ = from_bytes(to_bytes(np.array([0.0, 0.5, -1.0, 2.0]), 8000, "wav"))
    assert back[:, 0].tolist() == [0, 16384, -32767, 32767]


def test_raw_pcm_needs_rate_and_channels() -> None:
    samples = tone(100, channels=2)
    data = to_bytes(samples, 48000, "raw")
    assert data == samples.astype("<i2").tobytes()
    back, rate = from_bytes(data, "raw", 48000, 2)
    assert rate == 48000 and np.array_equal(back, samples)
    with pytest.raises(AudioFormatError, match="needs rate_hz and channels"):
        from_bytes(data, "raw")


def test_write_and_read_pick_the_format_from_the_extension(tmp_path: Path) -> None:
    for ext in ("wav", "flac", "mp3"):
        path = tmp_path / f"take.{ext}"
        write(path, tone(), 48000)
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames) == (48000, 1, 48000)
        back, rate = read(path)
        assert rate == 48000 and back.shape == (48000, 1)


@pytest.mark.parametrize(
    ("array", "rate", "fmt", "message"),
    [
        (np.zeros(10, np.int32), 8000, "wav", "int32 samples are ambiguous"),
        (np.zeros((2, 48000), np.int16), 8000, "wav", "looks channels-first: pass array.T"),
        (np.zeros((10, 2, 2), np.int16), 8000, "wav", r"expected shape \(frames,\)"),
        (np.zeros((10, 0), np.int16), 8000, "wav", "no channels"),
        ([0, 1, 2], 8000, "wav", "expected a NumPy array"),
        (np.array([np.nan]), 8000, "wav", "NaN"),
        (np.zeros(10, np.int16), 7000, "mp3", "mp3 cannot hold 7000 Hz audio"),
        (np.zeros((10, 3), np.int16), 8000, "mp3", "mp3 holds 1..2 channels"),
        (np.zeros(10, np.int16), 48000.5, "wav", "must be an integer"),
        (np.zeros(10, np.int16), 0, "wav", "out of range"),
        (np.zeros(10, np.int16), 8000, "aiff", "unknown audio format 'aiff'"),
    ],
)
def test_clear_errors(array: object, rate: object, fmt: str, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        to_bytes(array, rate, fmt)  # type: ignore[arg-type]


def test_undecodable_input(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="cannot decode audio"):
        from_bytes(b"definitely not audio")
    with pytest.raises(AudioFormatError, match="cannot read"):
        read(tmp_path / "missing.wav")
    with pytest.raises(AudioFormatError, match="unknown audio format"):
        write(tmp_path / "noext", tone(), 48000)


def test_as_frames_passes_int16_through() -> None:
    samples = tone(10, channels=2)
    assert as_frames(samples) is samples


def test_the_file_half_of_the_api_lives_outside_common() -> None:
    """common/ holds the in-memory half (it touches no file); the four functions are one
    import for a script, as the README shows."""
    assert not hasattr(audiofile, "read") and not hasattr(audiofile, "write")
    assert (read.__module__, write.__module__) == ("micwire.app.audiofiles",) * 2
    assert set(micwire.__all__) >= {"to_bytes", "from_bytes", "write", "read"}
