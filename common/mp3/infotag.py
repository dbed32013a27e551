"""The Xing/LAME "Info" tag frame that makes a constant-bitrate MP3 gapless, as bytes.

An MP3 file is a run of frames, each a 4-byte header (ISO/IEC 11172-3 §2.4.1.3 for
MPEG-1, 13818-3 §2.4.1.3 for MPEG-2 and the unofficial MPEG-2.5 that extends it down to
8 kHz) followed by side information and main data. A constant-bitrate stream says nothing
about where its audio starts and ends: an encoder puts ``encoder_delay`` samples of its own
before the first input sample and pads the last frame, and every decoder adds
:data:`~.header.DECODER_DELAY` more. LAME's answer, which libmpg123 (inside libsndfile),
FFmpeg, foobar2000 and Apple's decoders read, is a first frame that carries no audio but a
tag:

=======  =====  ======================================================================
offset   bytes  field (offsets from the start of the frame, big-endian numbers)
=======  =====  ======================================================================
0        4      frame header: the stream's own, padding bit clear
4        s      side information, all zero (s = 9, 17 or 32: ``side_info_bytes``)
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
0), LAME's ``crc16_lookup`` (:mod:`.crc`).

The tag frame has the stream's bitrate, so that a decoder which ignores the tag still sees
one constant bitrate. At low bitrates the 100-byte TOC does not fit in a frame; LAME then
writes no tag at all, we write the tag without the TOC (flags 1+2+8), which libmpg123
(tests/receiver/test_mp3.py) and FFmpeg 5.1 (checked by hand) read as well: for a constant
bitrate the TOC says nothing that the frame and byte counts do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AudioFormatError
from .crc import crc16
from .header import (
    DUAL_CHANNEL,
    HEADER_BYTES,
    JOINT_STEREO,
    MONO,
    STEREO,
    FrameHeader,
    bitrates_kbps,
    cbr_header,
    replace_padding,
    side_info_bytes,
)

_XING_FLAG_FRAMES, _XING_FLAG_BYTES, _XING_FLAG_TOC, _XING_FLAG_QUALITY = 1, 2, 4, 8
_TOC_BYTES = 100
_LAME_EXTENSION_BYTES = 36
#: The version string LAME itself writes (``get_lame_tag_encoder_short_version``). Decoders
#: only trust the delay/padding fields when the string starts with "LAME", and the audio is
#: LAME's: lameenc 1.9 links LAME 3.100.
LAME_VERSION = "LAME3.100"


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


def _xing_offset(header: FrameHeader) -> int:
    # after the (zero) side information, where LAME puts it and libmpg123 looks for it
    return HEADER_BYTES + side_info_bytes(header.version, header.channels)


def info_frame_fits(header: FrameHeader, toc: bool = True) -> bool:
    """The Info frame (with the TOC, or without) fits a frame with ``header``."""
    tag_bytes = 4 + 4 + 4 + 4 + (_TOC_BYTES if toc else 0) + 4 + _LAME_EXTENSION_BYTES
    return _xing_offset(header) + tag_bytes <= replace_padding(header).frame_bytes


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
