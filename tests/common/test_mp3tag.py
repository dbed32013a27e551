"""MP3 frame headers and the Info/LAME tag, against the frames LAME 3.100 itself writes."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from micwire.common import mp3
from micwire.common.errors import AudioFormatError
from micwire.common.mp3 import FrameHeader, FrameScanner, InfoTag
from micwire.common.mp3.header import JOINT_STEREO, MPEG1, MPEG25

# The Info frame `lame -b 64 --cbr --noreplaygain` (LAME 3.100) wrote for 48123 samples of
# 48 kHz mono noise: 43 audio frames, 8448 bytes, delay 576, padding 837, -q 3, lowpass
# 16.5 kHz. Zeros to the end of the 192-byte frame.
LAME_48K_MONO = bytes.fromhex(
    "fffb54c40000000000000000000000000000000000496e666f0000000f0000002b000021000005050b0b"
    "11111717171d1d23232929292f2f35353b3b3b414147474d4d4d535359595f5f5f65656b6b7171717777"
    "7d7d82828288888e8e9494949a9aa0a0a6a6a6acacb2b2b8b8b8bebec4c4cacacad0d0d6d6dcdcdce2e2"
    "e8e8eeeeeef4f4fafaffff000000394c414d45332e31303001a50000000000000000144024034582000040"
    "00002100a4c4f158"
).ljust(192, b"\0")
# ... and for 8123 samples of 8 kHz (MPEG-2.5) stereo at 64 kbit/s: 17 frames, 10368 bytes,
# delay 576, padding 1093, and a ReplayGain value (radio -0.5 dB). A 576-byte frame.
LAME_8K_STEREO = bytes.fromhex(
    "ffe388640000000000000000000000000000000000496e666f0000000f0000001100002880000f0f0f0f"
    "0f1e1e1e1e1e1e2d2d2d2d2d2d3c3c3c3c3c3c4b4b4b4b4b4b5a5a5a5a5a5a6969696969697878787878"
    "788787878787969696969696a5a5a5a5a5a5b4b4b4b4b4b4c3c3c3c3c3c3d2d2d2d2d2d2e1e1e1e1e1e1"
    "f0f0f0f0f0f0ffffffffff000000394c414d45332e3130300128000000002e05000014402404452e0000"
    "40000028807fddca57"
).ljust(576, b"\0")


def crc16_bitwise(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC, one bit at a time: the definition, to check the fast versions against."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# --- frame headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels", "kbps", "frame_bytes", "samples", "side_info"),
    [
        (48000, 1, 64, 192, 1152, 17),  # MPEG-1: 144000 * 64 / 48000
        (44100, 2, 128, 417, 1152, 32),  # 417.96: padded to 418 in some frames
        (32000, 2, 64, 288, 1152, 32),
        (24000, 1, 48, 144, 576, 9),  # MPEG-2: 72000 * 48 / 24000
        (16000, 2, 64, 288, 576, 17),
        (8000, 1, 24, 216, 576, 9),  # MPEG-2.5
        (11025, 2, 64, 417, 576, 17),
    ],
)
def test_header_sizes_follow_the_standard(
    rate: int, channels: int, kbps: int, frame_bytes: int, samples: int, side_info: int
) -> None:
    header = mp3.cbr_header(rate, channels, kbps)
    assert (header.frame_bytes, header.samples_per_frame) == (frame_bytes, samples)
    assert header.side_info_bytes == side_info
    assert header.channels == channels


@pytest.mark.parametrize("rate", mp3.RATES_HZ)
@pytest.mark.parametrize("channels", [1, 2])
def test_header_round_trips_through_bytes(rate: int, channels: int) -> None:
    for kbps in mp3.bitrates_kbps(rate):
        header = mp3.cbr_header(rate, channels, kbps)
        for padded in (False, True):
            padded_header = replace(header, padding=padded)
            data = padded_header.to_bytes()
            assert FrameHeader.parse(data) == padded_header
            assert padded_header.frame_bytes == header.frame_bytes + padded


def test_header_parses_lames_own_first_frames() -> None:
    mono = FrameHeader.parse(LAME_48K_MONO)
    assert (mono.version, mono.rate_hz, mono.bitrate_kbps, mono.channels) == (
        MPEG1,
        48000,
        64,
        1,
    )
    assert mono == mp3.cbr_header(48000, 1, 64)  # what we write is what LAME writes
    stereo = FrameHeader.parse(LAME_8K_STEREO)
    assert (stereo.version, stereo.rate_hz, stereo.bitrate_kbps, stereo.mode) == (
        MPEG25,
        8000,
        64,
        JOINT_STEREO,
    )


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"ID3\x04", "no MPEG frame sync"),
        (bytes.fromhex("fffd54c4"), "not a constant-bitrate Layer III"),  # Layer II
        (bytes.fromhex("fffb04c4"), "not a constant-bitrate Layer III"),  # free format
        (bytes.fromhex("fffbfcc4"), "not a constant-bitrate Layer III"),  # bitrate 15
        (bytes.fromhex("fffb5cc4"), "not a constant-bitrate Layer III"),  # rate index 3
        (bytes.fromhex("ffeb54c4"), "not a constant-bitrate Layer III"),  # version 01
        (b"\xff\xfb", "needs 4 bytes"),
    ],
)
def test_header_refuses_what_is_not_a_layer_3_frame(data: bytes, says: str) -> None:
    with pytest.raises(AudioFormatError, match=says):
        FrameHeader.parse(data)


def test_impossible_rates_and_bitrates_say_what_would_work() -> None:
    with pytest.raises(AudioFormatError, match=r"44000 Hz.*8000, 11025"):
        mp3.cbr_header(44000, 1, 64)
    with pytest.raises(AudioFormatError, match=r"8 kbit/s is not an MPEG-1 .*32, 40"):
        mp3.cbr_header(48000, 1, 8)
    with pytest.raises(AudioFormatError, match=r"320 kbit/s is not an MPEG-2 .*144, 160"):
        mp3.cbr_header(24000, 2, 320)
    with pytest.raises(AudioFormatError, match="1 or 2 channels"):
        mp3.cbr_header(48000, 3, 64)


# --- CRC-16 -------------------------------------------------------------------------------


def test_crc16_is_crc16_arc() -> None:
    assert mp3.crc16(b"123456789") == 0xBB3D  # the catalogued check value


@pytest.mark.parametrize("n", [0, 1, 7, 511, 512, 513, 1000, 4096, 8191, 20000])
def test_crc16_fast_paths_agree_with_the_definition(n: int) -> None:
    data = os.urandom(n)
    start = int.from_bytes(os.urandom(2), "big")
    assert mp3.crc16(data, start) == crc16_bitwise(data, start)
    half = n // 3
    assert mp3.crc16(data[half:], mp3.crc16(data[:half], start)) == crc16_bitwise(data, start)


# --- the Info frame -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            LAME_48K_MONO,
            InfoTag(frames=43, stream_bytes=8448, encoder_delay=576, padding=837,
                    music_crc=0xA4C4, lame_quality=3, lowpass_hz=16500),
        ),
        (
            LAME_8K_STEREO,
            InfoTag(frames=17, stream_bytes=10368, encoder_delay=576, padding=1093,
                    music_crc=0x7FDD, lame_quality=3, lowpass_hz=4000),
        ),
    ],
)  # fmt: skip
def test_parse_reads_lames_tag(frame: bytes, expected: InfoTag) -> None:
    _, tag = mp3.parse_info_frame(frame)
    assert tag == expected
    assert tag.has_toc
    assert tag.samples(FrameHeader.parse(frame).samples_per_frame) in (48123, 8123)


def test_we_build_lames_tag_byte_for_byte_but_the_toc_and_preset() -> None:
    header, tag = mp3.parse_info_frame(LAME_48K_MONO)
    ours = mp3.info_frame(header, tag)
    assert len(ours) == len(LAME_48K_MONO) == 192
    xing = 4 + 17
    toc = range(xing + 16, xing + 116)
    preset = range(xing + 120 + 26, xing + 120 + 28)  # the lame CLI puts -b there; we, 0
    tag_crc = range(xing + 120 + 34, xing + 120 + 36)
    differ = [i for i in range(192) if ours[i] != LAME_48K_MONO[i]]
    assert differ  # the TOC is computed differently (see below)
    assert not [i for i in differ if i not in toc and i not in preset and i not in tag_crc]
    assert mp3.parse_info_frame(ours) == (header, tag)  # and its CRC is right


def test_toc_points_at_frames_of_a_constant_bitrate_stream() -> None:
    header = mp3.cbr_header(48000, 1, 64)
    tag = InfoTag(frames=100, stream_bytes=101 * 192, encoder_delay=576, padding=0)
    frame = mp3.info_frame(header, tag)
    toc = frame[4 + 17 + 16 : 4 + 17 + 116]
    # percent i of the audio is frame i, which starts at byte 192 * (1 + i) of 19392
    assert list(toc) == [min(255, 256 * 192 * (1 + i) // (101 * 192)) for i in range(100)]


def test_fields_sit_where_decoders_look_for_them() -> None:
    header = mp3.cbr_header(22050, 2, 96)  # MPEG-2 stereo: tag after 4 + 17 bytes
    tag = InfoTag(frames=0x01020304, stream_bytes=0x0A0B0C0D, encoder_delay=0x123,
                  padding=0x456, music_crc=0xBEEF, lame_quality=5)  # fmt: skip
    frame = mp3.info_frame(header, tag)
    assert frame[:4] == header.to_bytes() and not any(frame[4:21])
    assert frame[21:25] == b"Info" and frame[25:29] == bytes((0, 0, 0, 0x0F))
    assert frame[29:33] == bytes((1, 2, 3, 4)) and frame[33:37] == bytes.fromhex("0a0b0c0d")
    assert frame[137:141] == (100 - 40 - 5).to_bytes(4, "big")
    lame = frame[141:177]
    assert lame[:9] == b"LAME3.100" and lame[9] == 0x01  # revision 0, CBR
    assert lame[20] == 96  # kbit/s
    assert lame[21:24] == bytes.fromhex("123456")  # 12-bit delay, 12-bit padding
    assert lame[24] >> 2 & 7 == 3  # joint stereo
    assert lame[28:32] == bytes.fromhex("0a0b0c0d") and lame[32:34] == bytes.fromhex("beef")
    assert int.from_bytes(lame[34:36], "big") == crc16_bitwise(frame[:175])
    assert not any(frame[177:])


def test_a_frame_too_small_for_the_toc_gets_the_tag_without_it() -> None:
    header = mp3.cbr_header(24000, 1, 48)  # 144 bytes: 13 + 156 do not fit
    assert not mp3.info_frame_fits(header) and mp3.info_frame_fits(header, toc=False)
    tag = InfoTag(frames=10, stream_bytes=11 * 144, encoder_delay=576, padding=529)
    frame = mp3.info_frame(header, tag)
    assert len(frame) == 144 and frame[13:17] == b"Info" and frame[20] == 0x0B  # no TOC flag
    _, parsed = mp3.parse_info_frame(frame)
    assert parsed == tag and not parsed.has_toc


def test_a_frame_too_small_for_any_tag_is_refused_with_the_bitrate_that_works() -> None:
    header = mp3.cbr_header(11025, 1, 8)  # 52 bytes; the tag needs 4 + 9 + 56
    tag = InfoTag(frames=1, stream_bytes=104, encoder_delay=576, padding=0)
    with pytest.raises(AudioFormatError, match="at least 16 kbit/s"):
        mp3.info_frame(header, tag)
    assert mp3.min_tagged_bitrate_kbps(24000, 2) == 32


def test_tag_values_out_of_range_are_refused() -> None:
    with pytest.raises(AudioFormatError, match="encoder_delay 4096"):
        InfoTag(frames=1, stream_bytes=1, encoder_delay=4096, padding=0)
    with pytest.raises(AudioFormatError, match="4 GiB"):
        InfoTag(frames=1, stream_bytes=1 << 32, encoder_delay=0, padding=0)


def test_parse_refuses_a_damaged_tag() -> None:
    damaged = bytearray(LAME_48K_MONO)
    damaged[4 + 17 + 120 + 21] ^= 0x10  # the delay
    with pytest.raises(AudioFormatError, match="CRC"):
        mp3.parse_info_frame(damaged)
    with pytest.raises(AudioFormatError, match="no Info/Xing tag"):
        mp3.parse_info_frame(mp3.silent_frame(FrameHeader.parse(LAME_48K_MONO)))


# --- counting frames ----------------------------------------------------------------------


def stream_44k(frames: int) -> tuple[bytes, list[int]]:
    """Silent 44.1 kHz stereo frames, padded the way a 44.1 kHz stream is (some 417, some
    418 bytes), with their sizes."""
    header = mp3.cbr_header(44100, 2, 128)
    data = bytearray()
    sizes = []
    for i in range(frames):
        padded = (i * 96) % 100 < 96  # about 96 % of 128 kbit/s frames need the extra byte
        frame_header = replace(header, padding=padded)
        data += frame_header.to_bytes() + bytes(frame_header.frame_bytes - 4)
        sizes.append(frame_header.frame_bytes)
    return bytes(data), sizes


@pytest.mark.parametrize("piece", [1, 3, 4, 100, 417, 1000])
def test_scanner_counts_complete_frames_fed_in_any_pieces(piece: int) -> None:
    data, sizes = stream_44k(20)
    assert len(set(sizes)) == 2
    scanner = FrameScanner(expected=mp3.cbr_header(44100, 2, 128))
    for start in range(0, len(data) - 100, piece):
        scanner.feed(data[start : min(start + piece, len(data) - 100)])
    assert scanner.frames == 19
    assert scanner.missing_bytes == 100  # the last frame's header is in, 100 bytes are not
    scanner.feed(data[len(data) - 100 :])
    assert (scanner.frames, scanner.missing_bytes) == (20, 0)


def test_scanner_refuses_a_frame_that_does_not_continue_the_stream() -> None:
    data, _ = stream_44k(2)
    other = mp3.silent_frame(mp3.cbr_header(44100, 2, 160))
    scanner = FrameScanner()
    scanner.feed(data)
    with pytest.raises(AudioFormatError, match="does not continue the stream"):
        scanner.feed(other)
