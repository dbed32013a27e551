"""MPEG audio Layer III frame headers and the Xing/LAME "Info" tag frame, as bytes.

An MP3 file is a run of frames, each a 4-byte header (ISO/IEC 11172-3 §2.4.1.3 for
MPEG-1, 13818-3 §2.4.1.3 for MPEG-2 and the unofficial MPEG-2.5 that extends it down to
8 kHz) followed by side information and main data. A constant-bitrate stream says nothing
about where its audio starts and ends: an encoder puts ``encoder_delay`` samples of its own
before the first input sample and pads the last frame, and every decoder adds
:data:`DECODER_DELAY` more. LAME's answer, which libmpg123 (inside libsndfile), FFmpeg,
foobar2000 and Apple's decoders read, is a first frame that carries no audio but a tag:

=======  =====  ======================================================================
offset   bytes  field (offsets from the start of the frame, big-endian numbers)
=======  =====  ======================================================================
0        4      frame header: the stream's own, padding bit clear
4        s      side information, all zero (s = :func:`side_info_bytes`: 9, 17 or 32)
4+s      4      ``Info`` (constant bitrate; ``Xing`` would mean variable)
+4       4      flags: 1 frames, 2 bytes, 4 TOC, 8 quality
+8       4      frames: audio frames after this one
+12      4      bytes: from this frame's first byte to the end of the audio
+16      100    TOC (only with flag 4): for each percent of the duration, the byte
                position of that point as a fraction of ``bytes``, times 256
+116     4      quality: 100 - 10 * LAME's VBR quality - LAME's ``-q``
+120     36     LAME extension (below)
=======  =====  ======================================================================

The LAME extension (http://gabriel.mp3-tech.org/mp3infotag.html, and LAME 3.100's
``VbrTag.c:PutLameVBR``; given the same values, :func:`info_frame` writes LAME's own frame
byte for byte but for the TOC, exact here for a constant bitrate, and the preset field)::

    0   9  encoder version, "LAME3.100"    21  3  encoder delay (12 bits), padding (12 bits)
    9   1  tag revision 0 / method 1 (CBR)  24  1  noise shaping, stereo mode, unwise, source
    10  1  lowpass / 100 Hz (0: unknown)               rate (2+3+1+2 bits)
    11  4  peak amplitude (0: not computed) 25  1  MP3Gain (0)
    15  2  radio ReplayGain (0: none)       26  2  surround + preset (0: none)
    17  2  audiophile ReplayGain (0: none)  28  4  music length: equal to ``bytes`` above
    19  1  flags: ATH type, NSPsytune, ...  32  2  CRC-16 of the audio frames
    20  1  bitrate in kbit/s (255: 255+)    34  2  CRC-16 of this frame's bytes 0 .. here

A decoder that knows the tag plays ``frames * samples_per_frame - encoder_delay - padding``
samples, starting ``encoder_delay + DECODER_DELAY`` samples into the decoded stream: exactly
what went into the encoder. Both CRCs are CRC-16/ARC (polynomial 0x8005, reflected, start
0), LAME's ``crc16_lookup``.

The tag frame has the stream's bitrate, so that a decoder which ignores the tag still sees
one constant bitrate. At low bitrates the 100-byte TOC does not fit in a frame; LAME then
writes no tag at all, we write the tag without the TOC (flags 1+2+8), which libmpg123
(tests/receiver/test_mp3.py) and FFmpeg 5.1 (checked by hand) read as well: for a constant
bitrate the TOC says nothing that the frame and byte counts do not.

Everything here is pure: bytes and numbers in, bytes and numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np
import numpy.typing as npt

from .errors import AudioFormatError

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

#: The mode field (header bits 7..6).
STEREO, JOINT_STEREO, DUAL_CHANNEL, MONO = 0, 1, 2, 3

HEADER_BYTES = 4
_XING_FLAG_FRAMES, _XING_FLAG_BYTES, _XING_FLAG_TOC, _XING_FLAG_QUALITY = 1, 2, 4, 8
_TOC_BYTES = 100
_LAME_EXTENSION_BYTES = 36
#: The version string LAME itself writes (``get_lame_tag_encoder_short_version``). Decoders
#: only trust the delay/padding fields when the string starts with "LAME", and the audio is
#: LAME's: lameenc 1.9 links LAME 3.100.
LAME_VERSION = "LAME3.100"


def rate_bits(rate_hz: int) -> tuple[int, int]:
    """``(version, sampling_frequency index)`` of an MP3 sample rate."""
    for version, rates in _RATES_HZ.items():
        if rate_hz in rates:
            return version, rates.index(rate_hz)
    allowed = ", ".join(str(r) for r in sorted(r for rs in _RATES_HZ.values() for r in rs))
    raise AudioFormatError(f"MP3 cannot hold {rate_hz} Hz audio; use one of {allowed}")


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
    if channels not in (1, 2):
        raise AudioFormatError(f"MP3 holds 1 or 2 channels, got {channels}")
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


# --- CRC-16 as LAME computes it -------------------------------------------------------------


def _crc16_table() -> npt.NDArray[np.uint16]:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ 0xA001, table >> 1)
    return table.astype(np.uint16)


_CRC_TABLE = _crc16_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]


@cache
def _shift_tables(log2_bytes: int) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Tables of the linear map "run the CRC over 2**log2_bytes zero bytes", for a state's
    low and high byte: ``state' = low[state & 0xFF] ^ high[state >> 8]``."""
    if log2_bytes == 0:
        # one zero byte: state' = (state >> 8) ^ T[state & 0xFF], and T[0] = 0
        return _CRC_TABLE.copy(), np.arange(256, dtype=np.uint16)
    half_low, half_high = _shift_tables(log2_bytes - 1)
    return _apply(half_low, half_high, half_low), _apply(half_low, half_high, half_high)


def _apply(
    low: npt.NDArray[np.uint16], high: npt.NDArray[np.uint16], state: npt.NDArray[np.uint16]
) -> npt.NDArray[np.uint16]:
    result: npt.NDArray[np.uint16] = low[state & 0xFF] ^ high[state >> 8]
    return result


def crc16(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-16/ARC of ``data``, continuing from ``crc`` (LAME's ``CRC_update_lookup``).

    The CRC is linear, so long inputs are reduced as a tree with NumPy (a few dozen array
    operations instead of a Python step per byte): each byte's contribution is computed at
    once, then neighbouring blocks are joined by shifting the left one over the right one's
    length.
    """
    n = len(data)
    if n < 512:  # not worth the NumPy set-up
        table = _CRC_TABLE_LIST
        for byte in bytes(data):
            crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
        return crc
    # leading zero bytes leave a zero state at zero, so pad in front to a power of two
    size = 1 << (n - 1).bit_length()
    states = np.zeros(size, dtype=np.uint16)
    states[size - n :] = _CRC_TABLE[np.frombuffer(bytes(data), dtype=np.uint8)]
    level = 0
    while len(states) > 1:
        pairs = states.reshape(-1, 2)
        states = _apply(*_shift_tables(level), pairs[:, 0]) ^ pairs[:, 1]
        level += 1
    result = int(states[0])
    # the state before ``data``, carried over all n bytes of it
    carried = np.array([crc], dtype=np.uint16)
    level = 0
    while n:
        if n & 1:
            carried = _apply(*_shift_tables(level), carried)
        n >>= 1
        level += 1
    return int(carried[0]) ^ result


# --- the Info tag frame ---------------------------------------------------------------------


@dataclass(frozen=True)
class InfoTag:
    """What the Info frame says about the stream behind it."""

    frames: int  # audio frames after the Info frame
    stream_bytes: int  # from the Info frame's first byte to the end of the audio
    encoder_delay: int  # samples the encoder put before the first input sample
    padding: int  # samples after the last input sample, to the end of the last frame
    music_crc: int = 0  # CRC-16 of the audio frames (all bytes after the Info frame)
    lame_quality: int = 5  # LAME's -q, 0 (best) .. 9 (fastest)
    lowpass_hz: int = 0  # 0: unknown
    encoder: str = LAME_VERSION
    has_toc: bool = field(default=True, compare=False)  # set by parse_info_frame

    def __post_init__(self) -> None:
        for name in ("encoder_delay", "padding"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFF:  # 12-bit fields
                raise AudioFormatError(f"{name} {value} does not fit the LAME tag (0..4095)")
        if not 0 <= self.frames < 1 << 32 or not 0 <= self.stream_bytes < 1 << 32:
            raise AudioFormatError("an MP3 stream of 4 GiB or more cannot be tagged")

    def samples(self, samples_per_frame: int) -> int:
        """Samples a gapless decoder plays."""
        return max(0, self.frames * samples_per_frame - self.encoder_delay - self.padding)


def silent_frame(header: FrameHeader) -> bytes:
    """An audio frame that decodes to silence: side information all zero (no main data,
    ``part2_3_length`` 0), so every spectral value is zero (11172-3 §2.4.3.4)."""
    header = replace_padding(header)
    return header.to_bytes() + bytes(header.frame_bytes - HEADER_BYTES)


def _xing_offset(header: FrameHeader) -> int:
    # after the (zero) side information, where LAME puts it and libmpg123 looks for it
    return HEADER_BYTES + side_info_bytes(header.version, header.channels)


def info_frame_fits(header: FrameHeader, toc: bool = True) -> bool:
    """The Info frame (with the TOC, or without) fits a frame with ``header``."""
    tag_bytes = 4 + 4 + 4 + 4 + (_TOC_BYTES if toc else 0) + 4 + _LAME_EXTENSION_BYTES
    return _xing_offset(header) + tag_bytes <= replace_padding(header).frame_bytes


def replace_padding(header: FrameHeader) -> FrameHeader:
    """``header`` with the padding bit clear, as the Info frame's own header has it."""
    if not header.padding:
        return header
    return replace(header, padding=False)


def _toc(header: FrameHeader, tag: InfoTag) -> bytes:
    if tag.frames == 0 or tag.stream_bytes == 0:
        return bytes(_TOC_BYTES)
    # constant bitrate: the audio frame that starts percent i of the duration, and where it
    # is, as a 256th of the stream (the Xing TOC's unit)
    frame_bytes = (tag.stream_bytes - header.frame_bytes) / tag.frames
    toc = bytearray(_TOC_BYTES)
    for percent in range(_TOC_BYTES):
        position = header.frame_bytes + (percent * tag.frames // 100) * frame_bytes
        toc[percent] = min(255, int(256 * position / tag.stream_bytes))
    return bytes(toc)


def _stereo_mode_field(mode: int) -> int:
    # LAME tag byte 24 bits 4..2: 0 mono, 1 stereo, 2 dual, 3 joint
    return {MONO: 0, STEREO: 1, DUAL_CHANNEL: 2, JOINT_STEREO: 3}[mode]


def _source_rate_field(rate_hz: int) -> int:
    # LAME tag byte 24 bits 7..6: <= 32 kHz, 44.1 kHz, 48 kHz, > 48 kHz
    return 0 if rate_hz <= 32000 else 1 if rate_hz == 44100 else 2


#: LAME 3.100 (lame_init_qval) for -q 0..9: the quality it really uses (8 runs as 7) and
#: its noise shaping method, as LAME's own tags show them.
_EFFECTIVE_QUALITY = (0, 1, 2, 3, 4, 5, 6, 7, 7, 9)
_NOISE_SHAPING = (2, 2, 2, 2, 2, 2, 2, 0, 0, 0)
#: LAME 3.100 defaults in tag byte 19: ATH type 4, NSPsytune (bit 4) always on.
_LAME_FLAGS = 0x14
#: LAME 3.100 sets VBR quality 4 for CBR; the Xing quality field is 100 - 10 * 4 - q.
_VBR_QUALITY = 4


def info_frame(header: FrameHeader, tag: InfoTag) -> bytes:
    """The Info/LAME tag frame for a constant-bitrate stream whose frames have ``header``.

    The frame is ``header.frame_bytes`` long (padding bit clear), so that it can be
    rewritten in place at the start of the file as the stream grows.
    """
    header = replace_padding(header)
    if header.protected:
        # LAME would then put a CRC of header and side information after the header (and
        # the tag over the side information); our streams carry no CRC
        raise AudioFormatError("an Info frame for a CRC-protected stream is not supported")
    toc = info_frame_fits(header, toc=True)
    if not toc and not info_frame_fits(header, toc=False):
        lowest = min_tagged_bitrate_kbps(header.rate_hz, header.channels)
        raise AudioFormatError(
            f"an {header.bitrate_kbps} kbit/s {header.rate_hz} Hz frame is too small for the"
            f" MP3 Info tag; use at least {lowest} kbit/s"
        )
    if not 0 <= tag.lame_quality <= 9:
        raise AudioFormatError(f"LAME quality {tag.lame_quality} is not in 0..9")
    frame = bytearray(header.frame_bytes)
    frame[0:HEADER_BYTES] = header.to_bytes()
    flags = _XING_FLAG_FRAMES | _XING_FLAG_BYTES | _XING_FLAG_QUALITY
    if toc:
        flags |= _XING_FLAG_TOC
    xing = bytearray(b"Info")
    xing += flags.to_bytes(4, "big")
    xing += tag.frames.to_bytes(4, "big")
    xing += tag.stream_bytes.to_bytes(4, "big")
    if toc:
        xing += _toc(header, tag)
    quality = _EFFECTIVE_QUALITY[tag.lame_quality]
    xing += (100 - 10 * _VBR_QUALITY - quality).to_bytes(4, "big")

    encoder = tag.encoder.encode("ascii")[:9].ljust(9, b"\0")
    lowpass = min(255, (tag.lowpass_hz + 50) // 100)
    unwise = header.rate_hz <= 32000  # LAME flags every source rate <= 32 kHz as "unwise"
    misc = (
        _NOISE_SHAPING[tag.lame_quality]
        | _stereo_mode_field(header.mode) << 2
        | unwise << 5
        | _source_rate_field(header.rate_hz) << 6
    )
    lame = bytearray(encoder)
    lame += bytes((0x01, lowpass))  # revision 0, method 1 = constant bitrate
    lame += bytes(4 + 2 + 2)  # peak amplitude, radio and audiophile ReplayGain: not computed
    lame += bytes((_LAME_FLAGS, min(255, header.bitrate_kbps)))
    lame += (tag.encoder_delay << 12 | tag.padding).to_bytes(3, "big")
    lame += bytes((misc, 0))  # misc; MP3Gain 0
    lame += bytes(2)  # surround info and preset: none
    lame += tag.stream_bytes.to_bytes(4, "big")  # "music length", LAME counts the tag frame
    lame += tag.music_crc.to_bytes(2, "big")

    start = _xing_offset(header)
    frame[start : start + len(xing) + len(lame)] = xing + lame
    end = start + len(xing) + len(lame)
    frame[end : end + 2] = crc16(frame[:end]).to_bytes(2, "big")
    return bytes(frame)


def min_tagged_bitrate_kbps(rate_hz: int, channels: int) -> int:
    """The lowest bitrate whose frames hold the Info tag (without the TOC)."""
    for bitrate in bitrates_kbps(rate_hz):
        if info_frame_fits(cbr_header(rate_hz, channels, bitrate), toc=False):
            return bitrate
    raise AudioFormatError(f"no {rate_hz} Hz bitrate holds the MP3 Info tag")  # pragma: no cover


def parse_info_frame(frame: bytes | bytearray | memoryview) -> tuple[FrameHeader, InfoTag]:
    """Read an Info (or Xing) frame with a LAME extension, checking the tag CRC."""
    header = FrameHeader.parse(frame)
    start = _xing_offset(header)
    if len(frame) < header.frame_bytes:
        raise AudioFormatError("the Info frame is cut short")
    if bytes(frame[start : start + 4]) not in (b"Info", b"Xing"):
        raise AudioFormatError("the first frame has no Info/Xing tag")
    at = start + 4
    flags = int.from_bytes(frame[at : at + 4], "big")
    at += 4
    frames = stream_bytes = quality = 0
    if flags & _XING_FLAG_FRAMES:
        frames = int.from_bytes(frame[at : at + 4], "big")
        at += 4
    if flags & _XING_FLAG_BYTES:
        stream_bytes = int.from_bytes(frame[at : at + 4], "big")
        at += 4
    if flags & _XING_FLAG_TOC:
        at += _TOC_BYTES
    if flags & _XING_FLAG_QUALITY:
        quality = int.from_bytes(frame[at : at + 4], "big")
        at += 4
    lame = bytes(frame[at : at + _LAME_EXTENSION_BYTES])
    if len(lame) < _LAME_EXTENSION_BYTES or lame[0] == 0:
        raise AudioFormatError("the Info tag has no LAME extension")
    if crc16(frame[: at + 34]) != int.from_bytes(lame[34:36], "big"):
        raise AudioFormatError("the LAME tag's CRC does not match")
    delay_padding = int.from_bytes(lame[21:24], "big")
    return header, InfoTag(
        frames=frames,
        stream_bytes=stream_bytes,
        encoder_delay=delay_padding >> 12,
        padding=delay_padding & 0xFFF,
        music_crc=int.from_bytes(lame[32:34], "big"),
        lame_quality=max(0, 100 - 10 * _VBR_QUALITY - quality) if quality else 0,
        lowpass_hz=lame[10] * 100,
        encoder=lame[:9].rstrip(b"\0").decode("ascii", "replace"),
        has_toc=bool(flags & _XING_FLAG_TOC),
    )


#: Header bits that stay put along a constant-bitrate stream: all but padding (bit 9), the
#: private bit (8) and the joint stereo mode extension (5..4).
_STEADY_BITS = 0xFFFFFCCF


class FrameScanner:
    """Counts the complete frames of a constant-bitrate Layer III stream fed in pieces of
    any size (an encoder's output ends wherever its bit reservoir happens to stand).

    Every frame must belong to the same stream as ``expected`` (or else the first frame,
    :meth:`FrameHeader.same_stream`); anything else raises :class:`AudioFormatError`, since
    an Info tag counting these frames would then lie.
    """

    def __init__(self, expected: FrameHeader | None = None) -> None:
        self.frames = 0
        self.complete_bytes = 0  # bytes of the complete frames
        self.first: FrameHeader | None = expected
        self._pending = bytearray()  # from the next frame's header on
        # the steady bits of the last frame parsed in full, and its size without padding:
        # a frame with the same bits needs no parsing (this runs for every frame)
        self._steady = -1
        self._unpadded_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        pending += data
        start = 0
        while len(pending) - start >= HEADER_BYTES:
            size = self._frame_bytes(pending, start)
            if len(pending) - start < size:
                break
            start += size
            self.frames += 1
            self.complete_bytes += size
        del pending[:start]

    def _frame_bytes(self, data: bytearray, offset: int) -> int:
        word = int.from_bytes(data[offset : offset + HEADER_BYTES], "big")
        if word & _STEADY_BITS == self._steady:
            return self._unpadded_bytes + (word >> 9 & 1)
        header = FrameHeader.parse(data, offset)
        if self.first is None:
            self.first = header
        elif not self.first.same_stream(header):
            raise AudioFormatError(
                f"frame {self.frames} ({header}) does not continue the stream ({self.first})"
            )
        self._steady = word & _STEADY_BITS
        self._unpadded_bytes = replace_padding(header).frame_bytes
        return header.frame_bytes

    @property
    def missing_bytes(self) -> int:
        """Bytes still to come of the last frame, if its header has arrived; else 0."""
        if len(self._pending) < HEADER_BYTES:
            return 0
        return self._frame_bytes(self._pending, 0) - len(self._pending)
