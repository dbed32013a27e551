"""MPEG audio Layer III as bytes: what micwire needs to write MP3 files that stay playable
and gapless while they grow (receiver/mp3.py). Pure: bytes and numbers in, bytes and
numbers out.

- :mod:`.header`: the 4-byte frame header, the rates, bitrates and channels MP3 can hold,
  a frame's length, a silent frame;
- :mod:`.crc`: CRC-16 as LAME computes it;
- :mod:`.infotag`: the Xing/LAME "Info" tag frame that says where the audio starts and
  ends (its layout is drawn there);
- :mod:`.scanner`: counting the complete frames of a stream fed in pieces.
"""

from __future__ import annotations

from .crc import crc16
from .header import (
    CHANNELS,
    DECODER_DELAY,
    RATES_HZ,
    FrameHeader,
    bitrates_kbps,
    cbr_header,
    check_channels,
    rate_bits,
    silent_frame,
)
from .infotag import InfoTag, info_frame, info_frame_fits, min_tagged_bitrate_kbps, parse_info_frame
from .scanner import FrameScanner

__all__ = [
    "CHANNELS",
    "DECODER_DELAY",
    "RATES_HZ",
    "FrameHeader",
    "FrameScanner",
    "InfoTag",
    "bitrates_kbps",
    "cbr_header",
    "check_channels",
    "crc16",
    "info_frame",
    "info_frame_fits",
    "min_tagged_bitrate_kbps",
    "parse_info_frame",
    "rate_bits",
    "silent_frame",
]
