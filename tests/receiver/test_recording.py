"""Recording files: long WAV recordings stay readable past 4 GiB (RF64), a full disk is
said plainly and leaves nothing half-written, batched writes keep every sample."""

from __future__ import annotations

import asyncio
import json
import os
import wave
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from micwire.common.errors import StorageError
from micwire.common.sidecar import Sidecar
from micwire.receiver import wav
from micwire.receiver.parts import Part as Recording

START = datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)


def about(stream: str) -> Sidecar:
    """What the sidecar says of the stream (the receiver's Stream gives more)."""
    return Sidecar(stream, "0" * 32, "0" * 64, parts=[], rate_hz=48000, channels=1)


async def record(
    directory: Path,
    segments: list[object],
    rate: int = 48000,
    channels: int = 1,
    formats: tuple[str, ...] = ("wav",),
) -> Recording:
    recording = await Recording.create(
        directory, "take", formats, rate, channels, START, about("take")
    )
    for segment in segments:
        await recording.write(segment)  # type: ignore[arg-type]
    await recording.close()
    return recording


def test_every_sample_and_gap_lands_in_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pieces = [rng.integers(-9000, 9000, (n, 2), dtype=np.int16) for n in (1, 960, 4800, 17)]
    segments: list[object] = [pieces[0], 480, pieces[1], pieces[2], 96000, pieces[3]]
    recording = asyncio.run(record(tmp_path, segments, channels=2, formats=("wav", "flac")))
    expected = np.concatenate(
        [
            pieces[0],
            np.zeros((480, 2), np.int16),
            pieces[1],
            pieces[2],
            np.zeros((96000, 2), np.int16),
            pieces[3],
        ]
    )
    for path in recording.paths:
        data, rate = sf.read(str(path), dtype="int16", always_2d=True)
        assert rate == 48000 and np.array_equal(data, expected), path.suffix
    sidecar = json.loads(recording.sidecar.read_text())
    assert sidecar["samples"] == len(expected) and sidecar["outcome"] == "complete"
    assert sidecar["gaps"] == [
        {"at_sample": 1, "samples": 480},
        {"at_sample": 1 + 480 + 960 + 4800, "samples": 96000},
    ]


def test_a_wav_past_4_gib_is_rf64_and_reads_to_its_end(tmp_path: Path) -> None:
    """6.2 h of 48 kHz stereo is 4 GiB: a plain WAV header cannot count further. Here
    192 kHz, 8 channels (3 MB/s): 1400 s of silence, then a marker, in one recording."""
    rate, channels = 192000, 8
    marker = np.full((1000, channels), 77, np.int16)
    silence = 1400 * rate
    if os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize < 6e9:
        pytest.skip("needs 6 GB free for a 4.3 GB WAV")
    recording = asyncio.run(record(tmp_path, [silence, marker], rate, channels))
    path = recording.paths[0]
    assert path.stat().st_size > 2**32
    with open(path, "rb") as f:
        assert f.read(4) == b"RF64"
    info = sf.info(str(path))
    assert info.frames == silence + 1000 and info.channels == channels
    with sf.SoundFile(str(path)) as f:
        f.seek(silence)
        assert np.array_equal(f.read(1000, dtype="int16"), marker)
    assert json.loads(recording.sidecar.read_text())["samples"] == silence + 1000
    path.unlink()


def test_a_short_wav_is_a_plain_wav(tmp_path: Path) -> None:
    recording = asyncio.run(record(tmp_path, [np.ones((4800, 1), np.int16)]))
    with open(recording.paths[0], "rb") as f:
        header = f.read(12)
    assert header[:4] == b"RIFF" and header[8:12] == b"WAVE"


@pytest.mark.parametrize("channels", [1, 2])
def test_mono_and_stereo_recordings_open_with_pythons_own_wave_module(
    tmp_path: Path, channels: int
) -> None:
    """What the snippets people start from use: ``wave`` refuses WAVE_FORMAT_EXTENSIBLE
    ("unknown format: 65534"), which libsndfile's RF64 writer put even in mono files."""
    rng = np.random.default_rng(3)
    audio = rng.integers(-9000, 9000, (4800, channels), dtype=np.int16)
    recording = asyncio.run(record(tmp_path, [audio, 480, audio], channels=channels))
    expected = np.concatenate([audio, np.zeros((480, channels), np.int16), audio])
    with wave.open(str(recording.paths[0])) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (channels, 48000, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, channels)
    assert np.array_equal(frames, expected)
    data, _ = sf.read(str(recording.paths[0]), dtype="int16", always_2d=True)
    assert np.array_equal(data, expected)


@pytest.mark.parametrize("rf64", [False, True])
def test_a_wav_is_cut_to_a_part_end_with_its_header_saying_so(tmp_path: Path, rf64: bool) -> None:
    """After a crash a part is cut to where every one of its files has audio (so parts join
    exactly): our files, and libsndfile's RF64 files from earlier versions."""
    audio = np.arange(-2000, 2000, dtype=np.int16).reshape(-1, 2)
    if rf64:
        path = tmp_path / "old.wav"
        sf.write(str(path), audio, 48000, format="RF64", subtype="PCM_16")
    else:
        path = asyncio.run(record(tmp_path, [audio], channels=2)).paths[0]
    wav.truncate(path, 1500)
    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    assert np.array_equal(data, audio[:1500])
    wav.truncate(path, 1900)  # holds less already: left alone
    assert sf.info(str(path)).frames == 1500


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system (tmpfs; needs root, as `make test` runs in CI)."""
    from rig import small_disk

    with small_disk(tmp_path) as mount:
        yield mount


def test_a_full_disk_is_said_plainly_and_leaves_no_half_files(small_disk: Path) -> None:
    async def fill() -> tuple[Recording, StorageError]:
        recording = await Recording.create(
            small_disk, "full", ("wav",), 48000, 1, START, about("full")
        )
        block = np.ones((9600, 1), np.int16)
        with pytest.raises(StorageError) as failure:
            for _ in range(200):  # 3.8 MB into 1 MiB
                await recording.write(block)
                await asyncio.sleep(0.005)
            await recording.close()
        with pytest.raises(StorageError):
            await recording.close()  # closing again says the same, finalises what it can
        return recording, failure.value

    recording, error = asyncio.run(fill())
    assert "no space left on device" in str(error)
    names = sorted(p.name for p in small_disk.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    sidecar = json.loads(recording.sidecar.read_text())
    assert sidecar["outcome"].startswith("failed: no space left on device")
    data, _ = sf.read(str(recording.paths[0]), dtype="int16")  # what fit is readable
    assert len(data) > 48000 and np.all(data == 1)


def test_audio_not_yet_on_disk_is_shown_until_it_is_written(tmp_path: Path) -> None:
    """The backlog figure (stats, /metrics) is the audio received and not yet written."""

    async def main() -> tuple[float, float, int]:
        recording = await Recording.create(
            tmp_path, "take", ("wav",), 48000, 1, START, about("take")
        )
        for _ in range(10):  # 0.2 s: less than a batch, so it waits for the next flush
            await recording.write(np.ones((960, 1), np.int16))
        waiting = recording.backlog_s
        await recording.close()
        return waiting, recording.backlog_s, sf.info(str(recording.paths[0])).frames

    waiting, after, frames = asyncio.run(main())
    assert waiting == pytest.approx(0.2) and after == 0 and frames == 9600
