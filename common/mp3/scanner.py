"""Counting the frames of a constant-bitrate Layer III stream as its bytes arrive."""

from __future__ import annotations

from ..errors import AudioFormatError
from .header import HEADER_BYTES, FrameHeader, replace_padding

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
