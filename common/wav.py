"""WAV headers for recordings: plain PCM that every reader opens, RF64 past 4 GiB.

A recording's header is written before its length is known and rewritten as the file
grows, so it has one fixed size whatever it says. Its layout follows EBU Tech 3306 (RF64):

    RIFF <size> WAVE
    JUNK <28>  (room for the ds64 chunk the file needs once it passes 4 GiB)
    fmt  <16>  WAVE_FORMAT_PCM (1) for mono and stereo; WAVE_FORMAT_EXTENSIBLE (0xFFFE,
               40 bytes) for more channels, where a plain header says nothing of them
    data <size>

Every RIFF reader skips a JUNK chunk, so up to 4 GiB this is a plain WAV: Python's own
``wave`` module, libsndfile and old players open it (libsndfile's own RF64 writer says
WAVE_FORMAT_EXTENSIBLE even for mono, which ``wave`` refuses: "unknown format: 65534").
Past 4 GiB, where a 32-bit size cannot count, ``RIFF`` becomes ``RF64``, the JUNK chunk
becomes ``ds64`` with the 64-bit sizes, and the 32-bit sizes say 0xFFFFFFFF.

Pure: builds and reads bytes; the files are the receiver's (micwire.receiver.wav).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import AudioFormatError

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: KSDATAFORMAT_SUBTYPE_PCM (00000001-0000-0010-8000-00aa00389b71), as stored.
PCM_SUBFORMAT = bytes.fromhex("0100000000001000800000aa00389b71")
BITS = 16
#: What a 32-bit size field can count.
MAX_32 = 0xFFFFFFFF
_DS64 = struct.Struct("<4sIQQQI")  # "ds64", 28, riff size, data size, sample count, table


def plain_format(channels: int) -> bool:
    """Mono and stereo need nothing but the plain PCM format (tag 1)."""
    return channels <= 2


def header_size(channels: int) -> int:
    fmt = 16 if plain_format(channels) else 40
    return 12 + (8 + 28) + (8 + fmt) + 8


def _fmt_chunk(rate_hz: int, channels: int) -> bytes:
    block = channels * BITS // 8
    common = (channels, rate_hz, rate_hz * block, block, BITS)
    if plain_format(channels):
        return b"fmt " + struct.pack("<IHHIIHH", 16, WAVE_FORMAT_PCM, *common)
    # the channel mask 0 says "no speaker positions": micwire does not know the layout
    return (
        b"fmt "
        + struct.pack("<IHHIIHHHHI", 40, WAVE_FORMAT_EXTENSIBLE, *common, 22, BITS, 0)
        + PCM_SUBFORMAT
    )


def header(rate_hz: int, channels: int, frames: int) -> bytes:
    """The header of a 16-bit recording holding ``frames`` frames, always
    :func:`header_size` bytes: a plain WAV up to 4 GiB, RF64 beyond."""
    data = frames * channels * BITS // 8
    riff = header_size(channels) - 8 + data
    fmt = _fmt_chunk(rate_hz, channels)
    if riff <= MAX_32:
        return (
            struct.pack("<4sI4s", b"RIFF", riff, b"WAVE")
            + struct.pack("<4sI", b"JUNK", 28)
            + bytes(28)
            + fmt
            + struct.pack("<4sI", b"data", data)
        )
    return (
        struct.pack("<4sI4s", b"RF64", MAX_32, b"WAVE")
        + _DS64.pack(b"ds64", 28, riff, data, frames, 0)
        + fmt
        + struct.pack("<4sI", b"data", MAX_32)
    )


@dataclass(frozen=True)
class Layout:
    """Where a WAV or RF64 file's fields are (any writer's: ours, libsndfile's)."""

    rf64: bool
    #: Offset of the ds64 chunk's body (RF64 only), and of the data chunk's header.
    ds64_at: int | None
    data_at: int
    block_align: int
    channels: int

    @property
    def audio_at(self) -> int:
        return self.data_at + 8


def layout(head: bytes) -> Layout:
    """Find the chunks of a WAV/RF64 file from its first bytes (a few KiB: the header).
    Raises AudioFormatError for anything else."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise AudioFormatError("not a WAV file")
    rf64 = head[:4] == b"RF64"
    at, ds64_at, block, channels = 12, None, 0, 0
    while at + 8 <= len(head):
        name, size = struct.unpack_from("<4sI", head, at)
        if name == b"ds64":
            ds64_at = at + 8
        elif name == b"fmt " and at + 8 + 14 <= len(head):
            channels, _, _, block = struct.unpack_from("<HIIH", head, at + 10)
        elif name == b"data":
            if not block or (rf64 and ds64_at is None):
                break
            return Layout(rf64, ds64_at, at, block, channels)
        at += 8 + size + (size & 1)  # RIFF chunks are padded to even sizes
    raise AudioFormatError("no fmt and data chunks in the first bytes of the WAV file")


def sizes(lay: Layout, frames: int) -> list[tuple[int, bytes]]:
    """The (offset, bytes) writes that make a file of this layout say it holds ``frames``
    frames (after it has been cut to ``lay.audio_at + frames * block_align`` bytes)."""
    data = frames * lay.block_align
    riff = lay.audio_at - 8 + data
    if not lay.rf64:
        if riff > MAX_32:
            raise AudioFormatError("a plain WAV header cannot count past 4 GiB")
        return [(4, struct.pack("<I", riff)), (lay.data_at + 4, struct.pack("<I", data))]
    assert lay.ds64_at is not None
    return [(lay.ds64_at, struct.pack("<QQQ", riff, data, frames))]
