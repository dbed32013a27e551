"""The 4-byte header in front of every MPEG audio Layer III frame, and what it implies.

ISO/IEC 11172-3 §2.4.1.3 for MPEG-1, 13818-3 §2.4.1.3 for MPEG-2 and the unofficial
MPEG-2.5 that extends it down to 8 kHz: the sample rates and bitrates a Layer III stream
can have (:data:`RATES_HZ`, :func:`bitrates_kbps`), a frame's length and side information,
and the header LAME writes for constant-bitrate audio (:func:`cbr_header`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import AudioFormatError

#: Samples every Layer III decoder outputs before the encoder's first sample: the synthesis
#: filterbank (ISO/IEC 11172-3 Annex C) plus the IMDCT overlap, 528 + 1. libmpg123 calls it
#: ``GAPLESS_DELAY``, FFmpeg ``528 + 1``.
DECODER_DELAY = 529

#: The version field's values (the two bits after the sync word).
MPEG1, MPEG2, MPEG25 = 3, 2, 0
_VERSION_NAMES = {MPEG1: "MPEG-1", MPEG2: "MPEG-2", MPEG25: "MPEG-2.5"}
#: ISO/IEC 11172-3 Table 3-B.2.1 (MPEG-1), 13818-3 Table 3-B.2.2 (MPEG-2; MPEG-2.5 halves it)
_RATES_HZ = {
    MPEG1: (44100, 48000, 32000),
    MPEG2: (22050, 24000, 16000),
    MPEG25: (11025, 12000, 8000),
}
#: Layer III bitrate_index -> kbit/s; index 0 is "free format", 15 forbidden.
_BITRATES_KBPS = {
    MPEG1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    MPEG2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_BITRATES_KBPS[MPEG25] = _BITRATES_KBPS[MPEG2]

#: Every sample rate MP3 can hold, lowest first.
RATES_HZ = tuple(sorted(rate for rates in _RATES_HZ.values() for rate in rates))
#: Channels MP3 can hold: mono, or two (stereo, joint stereo, dual channel).
CHANNELS = (1, 2)
#: The mode field (header bits 7..6).
STEREO, JOINT_STEREO, DUAL_CHANNEL, MONO = 0, 1, 2, 3

HEADER_BYTES = 4


def rate_bits(rate_hz: int) -> tuple[int, int]:
    """``(version, sampling_frequency index)`` of an MP3 sample rate."""
    for version, rates in _RATES_HZ.items():
        if rate_hz in rates:
            return version, rates.index(rate_hz)
    allowed = ", ".join(str(r) for r in RATES_HZ)
    raise AudioFormatError(f"MP3 cannot hold {rate_hz} Hz audio; use one of {allowed}")


def check_channels(channels: int) -> None:
    """:class:`AudioFormatError` unless MP3 can hold ``channels``."""
    if channels not in CHANNELS:
        raise AudioFormatError(f"MP3 holds 1 or 2 channels, got {channels}")


def bitrates_kbps(rate_hz: int) -> tuple[int, ...]:
    """The constant bitrates a Layer III stream at ``rate_hz`` can have."""
    return _BITRATES_KBPS[rate_bits(rate_hz)[0]][1:]


@dataclass(frozen=True)
class FrameHeader:
    """The 32-bit header in front of every MPEG audio frame (ISO/IEC 11172-3 §2.4.2.3)."""

    version: int  # MPEG1, MPEG2 or MPEG25
    protected: bool  # a CRC-16 follows the header (protection_bit == 0)
    bitrate_kbps: int
    rate_hz: int
    padding: bool  # one extra byte in this frame (keeps 44.1 kHz-family streams on rate)
    mode: int  # STEREO, JOINT_STEREO, DUAL_CHANNEL or MONO
    mode_extension: int = 0
    private: bool = False
    copyright: bool = False
    original: bool = True
    emphasis: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader:
        """Read a Layer III header; :class:`AudioFormatError` if it is not one we can use."""
        if len(data) < offset + HEADER_BYTES:
            raise AudioFormatError("an MP3 frame header needs 4 bytes")
        word = int.from_bytes(data[offset : offset + HEADER_BYTES], "big")
        if word >> 21 != 0x7FF:
            raise AudioFormatError(f"no MPEG frame sync at byte {offset} ({word:08x})")
        version = (word >> 19) & 3
        layer = (word >> 17) & 3  # 1 = Layer III
        bitrate_index = (word >> 12) & 15
        rate_index = (word >> 10) & 3
        if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
            raise AudioFormatError(
                f"MPEG header {word:08x} at byte {offset} is not a constant-bitrate Layer III"
                " frame (reserved version, other layer, free format or reserved value)"
            )
        return cls(
            version=version,
            protected=not (word >> 16) & 1,
            bitrate_kbps=_BITRATES_KBPS[version][bitrate_index],
            rate_hz=_RATES_HZ[version][rate_index],
            padding=bool((word >> 9) & 1),
            private=bool((word >> 8) & 1),
            mode=(word >> 6) & 3,
            mode_extension=(word >> 4) & 3,
            copyright=bool((word >> 3) & 1),
            original=bool((word >> 2) & 1),
            emphasis=word & 3,
        )

    def to_bytes(self) -> bytes:
        version, rate_index = rate_bits(self.rate_hz)
        if version != self.version:
            raise AudioFormatError(f"{self.rate_hz} Hz is not an {self.version_name} rate")
        try:
            bitrate_index = _BITRATES_KBPS[version].index(self.bitrate_kbps, 1)
        except ValueError:
            raise AudioFormatError(self._bad_bitrate()) from None
        word = (
            0x7FF << 21
            | version << 19
            | 1 << 17  # Layer III
            | (not self.protected) << 16
            | bitrate_index << 12
            | rate_index << 10
            | self.padding << 9
            | self.private << 8
            | self.mode << 6
            | self.mode_extension << 4
            | self.copyright << 3
            | self.original << 2
            | self.emphasis
        )
        return word.to_bytes(HEADER_BYTES, "big")

    def _bad_bitrate(self) -> str:
        legal = ", ".join(str(b) for b in _BITRATES_KBPS[self.version][1:])
        return (
            f"{self.bitrate_kbps} kbit/s is not an {self.version_name} Layer III bitrate;"
            f" use one of {legal}"
        )

    @property
    def version_name(self) -> str:
        return _VERSION_NAMES[self.version]

    def __str__(self) -> str:
        modes = ("stereo", "joint stereo", "dual channel", "mono")
        return (
            f"{self.version_name} Layer III, {self.rate_hz} Hz, {self.bitrate_kbps} kbit/s,"
            f" {modes[self.mode]}"
        )

    @property
    def channels(self) -> int:
        return 1 if self.mode == MONO else 2

    @property
    def samples_per_frame(self) -> int:
        # 11172-3: two granules of 576; 13818-3 (LSF, and 2.5): one granule
        return 1152 if self.version == MPEG1 else 576

    @property
    def frame_bytes(self) -> int:
        """Length of the frame, header included (11172-3 §2.4.3.1, 13818-3 §2.4.3.1)."""
        slots = self.samples_per_frame // 8  # bytes per (kbit/s / Hz): 144 or 72
        return slots * self.bitrate_kbps * 1000 // self.rate_hz + self.padding

    @property
    def side_info_bytes(self) -> int:
        return side_info_bytes(self.version, self.channels) + 2 * self.protected

    def same_stream(self, other: FrameHeader) -> bool:
        """``other`` belongs to the same constant-bitrate stream (padding and the joint
        stereo mode extension may change from frame to frame)."""
        return (
            self.version == other.version
            and self.rate_hz == other.rate_hz
            and self.bitrate_kbps == other.bitrate_kbps
            and self.channels == other.channels
        )


def side_info_bytes(version: int, channels: int) -> int:
    """Layer III side information after the header (and its CRC): 11172-3 §2.4.1.7 has 17
    bytes for one channel, 32 for two; 13818-3 §2.4.1.7 (one granule) 9 and 17."""
    if version == MPEG1:
        return 17 if channels == 1 else 32
    return 9 if channels == 1 else 17


def cbr_header(rate_hz: int, channels: int, bitrate_kbps: int) -> FrameHeader:
    """The header LAME writes for constant-bitrate ``channels`` audio: mono, or joint stereo,
    no CRC, "original" set (``lame_init``'s defaults)."""
    check_channels(channels)
    version, _ = rate_bits(rate_hz)
    header = FrameHeader(
        version=version,
        protected=False,
        bitrate_kbps=bitrate_kbps,
        rate_hz=rate_hz,
        padding=False,
        mode=MONO if channels == 1 else JOINT_STEREO,
    )
    if bitrate_kbps not in _BITRATES_KBPS[version][1:]:
        raise AudioFormatError(header._bad_bitrate())
    return header


def replace_padding(header: FrameHeader) -> FrameHeader:
    """``header`` with the padding bit clear, as the Info frame's own header has it."""
    if not header.padding:
        return header
    return replace(header, padding=False)


def silent_frame(header: FrameHeader) -> bytes:
    """An audio frame that decodes to silence: side information all zero (no main data,
    ``part2_3_length`` 0), so every spectral value is zero (11172-3 §2.4.3.4)."""
    header = replace_padding(header)
    return header.to_bytes() + bytes(header.frame_bytes - HEADER_BYTES)
