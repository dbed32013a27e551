"""WAV headers: a plain PCM WAV that Python's ``wave`` opens, RF64 once past 4 GiB, and the
fields of any writer's file found again (to cut a part short after a crash)."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from micwire.common import wav
from micwire.common.errors import AudioFormatError


def fake_file(rate: int, channels: int, samples: np.ndarray) -> bytes:
    return wav.header(rate, channels, len(samples)) + samples.astype("<i2").tobytes()


@pytest.mark.parametrize("channels", [1, 2])
def test_mono_and_stereo_are_plain_pcm_that_python_wave_opens(channels: int) -> None:
    samples = np.arange(-300, 300, dtype=np.int16).repeat(channels).reshape(-1, channels)
    data = fake_file(44100, channels, samples)
    assert struct.unpack_from("<H", data, data.index(b"fmt ") + 8)[0] == wav.WAVE_FORMAT_PCM
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (
            channels,
            44100,
            2,
            600,
        )
        frames = np.frombuffer(w.readframes(600), "<i2").reshape(-1, channels)
    assert np.array_equal(frames, samples)
    back, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert rate == 44100 and np.array_equal(back, samples)


def test_more_channels_say_extensible_and_read_back() -> None:
    samples = np.arange(6 * 100, dtype=np.int16).reshape(-1, 6)
    data = fake_file(48000, 6, samples)
    assert len(wav.header(48000, 6, 0)) == wav.header_size(6)
    assert struct.unpack_from("<H", data, data.index(b"fmt ") + 8)[0] == 0xFFFE
    back, _ = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert np.array_equal(back, samples)


def test_the_header_keeps_its_size_and_turns_rf64_past_4_gib(tmp_path: Path) -> None:
    """Past 4 GiB the same-sized header says RF64: a sparse file (nothing written in the
    middle) is read by libsndfile to its last frame."""
    frames = 2**31 + 1000  # mono 16-bit: 4 GiB and a bit
    head = wav.header(48000, 1, frames)
    assert head[:4] == b"RF64" and len(head) == wav.header_size(1)
    assert len(wav.header(48000, 1, 2**31 - 100)) == len(head)
    assert wav.header(48000, 1, 2**31 - 100)[:4] == b"RIFF"
    marker = np.full(1000, 77, np.int16)
    path = tmp_path / "big.wav"
    with open(path, "wb") as f:
        f.write(head)
        f.seek(len(head) + (frames - 1000) * 2)
        f.write(marker.tobytes())
    with sf.SoundFile(str(path)) as f:
        assert f.frames == frames
        f.seek(frames - 1000)
        assert np.array_equal(f.read(1000, dtype="int16"), marker)


@pytest.mark.parametrize("frames", [0, 10, 2**31 + 5])
def test_layout_finds_the_fields_it_will_rewrite(frames: int) -> None:
    lay = wav.layout(wav.header(48000, 1, frames))
    assert lay.rf64 == (frames > 2**31) and lay.block_align == 2 and lay.channels == 1
    assert lay.audio_at == wav.header_size(1)
    head = bytearray(wav.header(48000, 1, frames))
    for offset, data in wav.sizes(lay, 3):
        head[offset : offset + len(data)] = data
    if lay.rf64:  # stays RF64 (valid, if larger than it needs to be): the sizes say 3 frames
        assert struct.unpack_from("<QQQ", head, lay.ds64_at or 0) == (
            wav.header_size(1) - 8 + 6,
            6,
            3,
        )
    else:
        assert bytes(head) == wav.header(48000, 1, 3)


def test_layout_reads_libsndfile_files_too(tmp_path: Path) -> None:
    path = tmp_path / "sf.wav"
    with sf.SoundFile(str(path), "w", 48000, 2, format="RF64", subtype="PCM_16") as f:
        f.write(np.zeros((10, 2), np.int16))
    lay = wav.layout(path.read_bytes()[:4096])
    assert lay.rf64 and lay.block_align == 4 and lay.channels == 2


@pytest.mark.parametrize(
    "head",
    [b"", b"RIFX\0\0\0\0WAVE", b"RIFF\0\0\0\0AVI ", b"RIFF\0\0\0\0WAVEdata\0\0\0\0"],
)
def test_anything_else_is_not_taken_for_a_wav(head: bytes) -> None:
    with pytest.raises(AudioFormatError):
        wav.layout(head)


def test_a_plain_header_cannot_be_made_to_count_past_4_gib() -> None:
    lay = wav.layout(wav.header(48000, 1, 0))
    with pytest.raises(AudioFormatError):
        wav.sizes(lay, 2**31 + 5)
