"""Mp3Writer on real files, read back the way users read them: with soundfile (libsndfile,
which decodes MP3 with libmpg123)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from micwire.common import mp3
from micwire.common.errors import AudioFormatError, StorageError
from micwire.receiver.mp3 import LAME_DELAY, Mp3Writer

Samples = npt.NDArray[np.int16]


def noise(n: int, rate: int, channels: int, seed: int = 1) -> Samples:
    """Independent noise per channel, band-limited to rate / 8 so that it lies well inside
    what LAME keeps at every rate, at about -12 dBFS."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    spectrum[np.fft.rfftfreq(n, 1 / rate) > rate / 8] = 0
    signal = np.fft.irfft(spectrum, n, axis=0)
    scaled = np.clip(np.rint(signal / signal.std() * 8000), -32768, 32767)
    result: Samples = scaled.astype(np.int16)
    return result


def write_in_blocks(writer: Mp3Writer, samples: Samples, block: int) -> None:
    for start in range(0, len(samples), block):
        writer.write(samples[start : start + block])


def read(path: Path) -> Samples:
    samples: Samples
    samples, _ = sf.read(path, dtype="int16", always_2d=True)
    return samples


def best_lag(decoded: Samples, original: Samples, max_lag: int = 3000) -> int:
    """The shift (in samples) that best lines ``decoded`` up with ``original``."""
    a = decoded[:, 0].astype(float)
    b = original[: len(decoded), 0].astype(float)
    size = 1 << (len(a) + len(b)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[np.arange(max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(xcorr[lags])])


def correlation(a: npt.NDArray[np.int16], b: npt.NDArray[np.int16]) -> float:
    return float(np.corrcoef(a.astype(float), b.astype(float))[0, 1])


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", mp3.RATES_HZ)
def test_file_decodes_to_exactly_the_samples_written_in_line(
    tmp_path: Path, rate: int, channels: int
) -> None:
    n = rate // 2 + 7  # not a whole number of frames
    samples = noise(n, rate, channels)
    path = tmp_path / "out.mp3"
    with Mp3Writer(path, rate, channels) as writer:
        write_in_blocks(writer, samples, rate // 50)
        assert writer.frames == n
    info = sf.info(path)
    assert (info.frames, info.samplerate, info.channels) == (n, rate, channels)
    decoded = read(path)
    assert decoded.shape == samples.shape
    assert best_lag(decoded, samples) == 0
    for channel in range(channels):
        assert correlation(decoded[:, channel], samples[:, channel]) > 0.9


@pytest.mark.parametrize(
    ("rate", "channels", "kbps"), [(48000, 1, 32), (44100, 2, 64), (24000, 2, 32)]
)
def test_low_bitrates_keep_the_rate_and_the_length(
    tmp_path: Path, rate: int, channels: int, kbps: int
) -> None:
    # left to itself, LAME resamples these to 16-24 kHz
    samples = noise(rate // 3, rate, channels)
    path = tmp_path / "low.mp3"
    with Mp3Writer(path, rate, channels, kbps) as writer:
        write_in_blocks(writer, samples, 4096)
    assert sf.info(path).samplerate == rate
    decoded = read(path)
    assert decoded.shape == samples.shape
    assert best_lag(decoded, samples) == 0


@pytest.mark.parametrize(("rate", "channels"), [(48000, 1), (44100, 2), (22050, 1), (8000, 2)])
def test_clicks_come_back_on_their_own_sample(tmp_path: Path, rate: int, channels: int) -> None:
    samples = np.zeros((rate, channels), np.int16)
    clicks = [rate // 10 + k * (rate // 7) + k for k in range(6)]
    samples[clicks] = 20000
    path = tmp_path / "clicks.mp3"
    with Mp3Writer(path, rate, channels) as writer:
        write_in_blocks(writer, samples, 960)
    decoded = read(path)
    for click in clicks:
        window = np.abs(decoded[click - 100 : click + 100, 0].astype(int))
        assert int(np.argmax(window)) - 100 == 0
        assert window.max() > 8000


def test_int16_stereo_keeps_its_level_and_its_channels(tmp_path: Path) -> None:
    # libsndfile 1.2.2 writes int16 stereo as clicks up to full scale
    samples = noise(48000, 48000, 2)
    path = tmp_path / "stereo.mp3"
    with Mp3Writer(path, 48000, 2) as writer:
        write_in_blocks(writer, samples, 960)
    decoded = read(path)
    for own, other in ((0, 1), (1, 0)):
        rms_db = 20 * np.log10(decoded[:, own].std() / samples[:, own].std())
        assert abs(rms_db) < 1.0
        assert correlation(decoded[:, own], samples[:, own]) > 0.95
        assert abs(correlation(decoded[:, own], samples[:, other])) < 0.1
    assert np.abs(decoded).max() < 1.5 * np.abs(samples).max()


@pytest.mark.parametrize(
    ("rate", "channels"),
    [(48000, 1), (44100, 2), (24000, 1), (8000, 1)],  # 24 kHz mono: the tag without TOC
)
def test_copy_taken_after_flush_reads_what_was_flushed(
    tmp_path: Path, rate: int, channels: int
) -> None:
    """What SIGKILL leaves: the file as it was after the last flush, never closed."""
    samples = noise(rate * 6 // 5, rate, channels)
    path = tmp_path / "live.mp3"
    block = rate // 50
    copies: list[tuple[Path, int]] = []
    with Mp3Writer(path, rate, channels) as writer:
        spf = writer.header.samples_per_frame
        for start in range(0, len(samples), block):
            writer.write(samples[start : start + block])
            if (start // block) % 12 == 11:  # every 240 ms
                writer.flush()
                assert writer.held_back <= LAME_DELAY + mp3.DECODER_DELAY + 4 * spf
                copy = tmp_path / f"copy{len(copies)}.mp3"
                shutil.copyfile(path, copy)
                copies.append((copy, writer.frames - writer.held_back))
    final = read(path)
    assert len(final) == len(samples)
    for copy, flushed in copies:
        assert flushed > 0
        assert sf.info(copy).frames == flushed
        decoded = read(copy)
        # the same samples as the finished file, so as aligned and as exact
        assert np.array_equal(decoded, final[:flushed])
        # and the tag says so to whoever takes the length from it without decoding
        _, tag = mp3.parse_info_frame(copy.read_bytes())
        assert tag.samples(spf) == flushed
        assert tag.stream_bytes == copy.stat().st_size


def test_file_is_readable_and_empty_before_any_audio_is_encoded(tmp_path: Path) -> None:
    path = tmp_path / "new.mp3"
    writer = Mp3Writer(path, 48000, 2)
    assert read(path).shape == (0, 2)  # as created: a crash right away
    writer.write(np.ones((200, 2), np.int16))
    writer.flush()
    assert writer.held_back == 200
    assert read(path).shape == (0, 2)
    writer.close()
    assert read(path).shape == (200, 2)


def test_recording_closed_without_audio_is_an_empty_mp3(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    Mp3Writer(path, 16000, 1).close()
    assert sf.info(path).frames == 0
    assert read(path).shape == (0, 1)


def test_tag_of_a_closed_file_has_the_delay_the_padding_and_the_crcs(tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp3"
    n = 30011
    with Mp3Writer(path, 44100, 2) as writer:
        write_in_blocks(writer, noise(n, 44100, 2), 1000)
    data = path.read_bytes()
    header, tag = mp3.parse_info_frame(data)  # checks the tag CRC
    assert (header.rate_hz, header.bitrate_kbps, header.channels) == (44100, 128, 2)
    assert tag.encoder_delay == 1152 + LAME_DELAY  # our silent frame, then LAME's delay
    assert mp3.DECODER_DELAY <= tag.padding <= 4095
    assert tag.samples(1152) == n
    assert tag.stream_bytes == len(data)
    assert tag.music_crc == mp3.crc16(data[header.frame_bytes :])


@pytest.mark.parametrize(
    ("rate", "channels", "kbps"), [(8000, 1, 24), (22050, 2, 96), (48000, 1, 64), (48000, 2, 128)]
)
def test_default_bitrates(tmp_path: Path, rate: int, channels: int, kbps: int) -> None:
    path = tmp_path / "rate.mp3"
    Mp3Writer(path, rate, channels).close()
    assert mp3.FrameHeader.parse(path.read_bytes()).bitrate_kbps == kbps


@pytest.mark.parametrize(
    ("rate", "channels", "kbps", "says"),
    [
        (44000, 1, None, "44000 Hz.*use one of 8000"),
        (48000, 3, None, "1 or 2 channels"),
        (48000, 1, 8, "8 kbit/s is not an MPEG-1 Layer III bitrate"),
        (11025, 1, 8, "too little for 11025 Hz .* at least 16 kbit/s"),
        (8000, 2, 80, "LAME encodes 8000 Hz MP3 at 64 kbit/s at most"),
    ],
)
def test_what_mp3_cannot_hold_is_refused_before_a_file_is_made(
    tmp_path: Path, rate: int, channels: int, kbps: int | None, says: str
) -> None:
    path = tmp_path / "never.mp3"
    with pytest.raises(AudioFormatError, match=says):
        Mp3Writer(path, rate, channels, kbps)
    assert not path.exists()


def test_wrong_arrays_are_refused(tmp_path: Path) -> None:
    with Mp3Writer(tmp_path / "a.mp3", 48000, 2) as writer:
        with pytest.raises(AudioFormatError, match="int16"):
            writer.write(np.zeros((10, 2), np.float32))
        with pytest.raises(AudioFormatError, match=r"shape \(n, 2\)"):
            writer.write(np.zeros((10, 1), np.int16))
        assert writer.frames == 0


def test_no_space_left_when_creating(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no space left on device creating /dev/full") as e:
        Mp3Writer(Path("/dev/full"), 48000, 1)
    assert isinstance(e.value, OSError)


def test_disk_filling_up_is_reported_and_the_file_keeps_what_was_flushed(tmp_path: Path) -> None:
    path = tmp_path / "full.mp3"
    samples = noise(48000, 48000, 1)
    writer = Mp3Writer(path, 48000, 1)
    write_in_blocks(writer, samples[:24000], 960)
    writer.flush()
    flushed = writer.frames - writer.held_back
    # the disk fills up: from now on every write to the file fails as on a full disk
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, writer._fd)
    finally:
        os.close(full)
    write_in_blocks(writer, samples[24000:], 960)
    with pytest.raises(StorageError, match=f"no space left on device writing {path}"):
        writer.flush()
    with pytest.raises(StorageError, match=f"no space left on device finishing {path}"):
        writer.close()
    writer.close()  # once closed, closing again is quiet
    decoded = read(path)
    assert len(decoded) == flushed > 0
    assert best_lag(decoded, samples) == 0
