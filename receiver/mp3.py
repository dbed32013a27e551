"""Write a live stream to an MP3 file that stays playable, gapless and aligned to the sample.

:class:`Mp3Writer` encodes with LAME 3.100 (linked into the ``lameenc`` wheel) at a constant
bitrate and keeps an Info/LAME tag frame (:mod:`micwire.common.mp3`) at the start of the
file, so that decoders that read LAME's tag play exactly the samples written, aligned with
the WAV written beside it (libmpg123, inside libsndfile, in the tests; FFmpeg 5.1 and the
mpg123 1.31 command checked by hand, finished files and copies taken after a flush alike):

- On creation the file gets the tag frame and one silent audio frame, and is already a
  valid, empty MP3 (an MP3 with no audio frame at all is one libsndfile refuses to open).
- :meth:`Mp3Writer.flush` appends what LAME has produced and rewrites the tag in place:
  frame count, byte count, delay. A copy of the file taken after a flush (what SIGKILL
  leaves) decodes to exactly the samples written before the flush but the last
  :attr:`Mp3Writer.held_back`, which LAME has not finished encoding: its look-ahead and bit
  reservoir, and the encoder's and decoder's delays (1105 samples). Measured with 20 ms
  writes: at most 100 ms at 32-48 kHz, 300 ms at 8 kHz (mono; stereo holds one frame
  less). What it decodes is the same, sample for sample, as the finished file will be.
- :meth:`Mp3Writer.close` drains LAME and writes the real padding: the file then decodes to
  exactly :attr:`Mp3Writer.frames` samples.

The tag's delay counts the silent frame as well as LAME's 576 samples. Until close, its
padding is :data:`~micwire.common.mp3.DECODER_DELAY` rather than 0, so that the length
the tag announces, ``frames * samples_per_frame - delay - padding``, is what a decoder can
output: the last 529 samples of a stream cut after a frame are still inside the decoder's
filterbank. (libmpg123 clamps a longer announcement; a reader that takes the length from
the tag alone would not.)

Why not libsndfile, as for the other formats: it writes int16 stereo as noise, writes no tag
at MPEG-2/2.5 rates (those files are 1280-1536 samples too long and misaligned), and its
LAME costs three to four times the CPU for the same bitrate and quality setting
(bench/mp3_encoders.py).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..common.errors import AudioFormatError, CodecError, StorageError, write_failure
from ..common.mp3 import (
    DECODER_DELAY,
    FrameScanner,
    InfoTag,
    cbr_header,
    check_channels,
    crc16,
    info_frame,
    info_frame_fits,
    min_tagged_bitrate_kbps,
    silent_frame,
)
from .lame import (
    DEFAULT_QUALITY,
    LAME_DELAY,
    check_bitrate,
    default_bitrate_kbps,
    make_encoder,
)

#: Encoded bytes kept in memory between flushes before they go to the file anyway.
_WRITE_THRESHOLD_BYTES = 64 * 1024


class _PartialWrite(Exception):
    def __init__(self, error: OSError, written: int) -> None:
        self.error = error
        self.written = written


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data`` at the file offset (os.write may write less than asked)."""
    written = 0
    with memoryview(data) as view:
        while written < len(view):
            try:
                written += os.write(fd, view[written:])
            except OSError as exc:
                raise _PartialWrite(exc, written) from exc


class Mp3Writer:
    """A constant-bitrate MP3 file, written while the audio arrives.

    ``write`` takes int16 samples of shape ``(n, channels)`` (or ``(n,)`` for mono).
    Errors: :class:`AudioFormatError` for a rate, channel count, bitrate or array the file
    cannot hold; :class:`StorageError` (an OSError) when the file cannot be created or
    written; :class:`CodecError` should LAME itself fail.
    """

    def __init__(
        self,
        path: Path,
        rate_hz: int,
        channels: int,
        bitrate_kbps: int | None = None,
        *,
        quality: int = DEFAULT_QUALITY,
    ) -> None:
        check_channels(channels)
        if not 0 <= quality <= 9:
            raise AudioFormatError(f"LAME quality must be 0 (best) .. 9 (fastest), got {quality}")
        if bitrate_kbps is None:
            bitrate_kbps = default_bitrate_kbps(rate_hz, channels)
        self.path = Path(path)
        self.rate_hz = rate_hz
        self.channels = channels
        self.bitrate_kbps = bitrate_kbps
        self.quality = quality
        self.header = cbr_header(rate_hz, channels, bitrate_kbps)
        check_bitrate(rate_hz, bitrate_kbps)
        if not info_frame_fits(self.header, toc=False):
            lowest = min_tagged_bitrate_kbps(rate_hz, channels)
            raise AudioFormatError(
                f"{bitrate_kbps} kbit/s is too little for {rate_hz} Hz MP3 with a length tag;"
                f" use at least {lowest} kbit/s"
            )
        self._lame = make_encoder(rate_hz, channels, bitrate_kbps, quality)
        self._spf = self.header.samples_per_frame
        self._scanner = FrameScanner(expected=self.header)  # LAME's frames
        self._pending = bytearray()  # encoded, not yet in the file
        self._frames = 0
        self._encoding = False  # LAME has had samples, so has a tail to flush at close
        self._closed = False
        self._fd = -1
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            # the Info frame's place (rewritten in place later), then the silent frame;
            # everything after goes at the file offset
            silent = silent_frame(self.header)
            _write_all(self._fd, bytes(self.header.frame_bytes) + silent)
            self._file_bytes = self.header.frame_bytes + len(silent)
            self._music_crc = crc16(silent)
            self._write_tag()
        except (OSError, _PartialWrite) as exc:
            self._close_fd()
            error = exc.error if isinstance(exc, _PartialWrite) else exc
            raise StorageError(f"{write_failure(error)} creating {self.path}") from error

    @property
    def frames(self) -> int:
        """Samples per channel written so far."""
        return self._frames

    @property
    def held_back(self) -> int:
        """Samples written that a copy of the file taken right after :meth:`flush` would
        not decode: LAME's look-ahead and bit reservoir, its delay and the decoder's."""
        return self._frames - self._decodable(self._lame_frames())

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        if self._closed:
            raise ValueError(f"{self.path} is closed")
        if samples.dtype != np.int16:
            raise AudioFormatError(f"the MP3 writer takes int16 samples, got {samples.dtype}")
        if samples.ndim == 1 and self.channels == 1:
            samples = samples.reshape(-1, 1)
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise AudioFormatError(
                f"expected shape (n, {self.channels}) for {self.channels}-channel MP3,"
                f" got {samples.shape}"
            )
        if not len(samples):
            return
        try:
            # interleaved 16-bit PCM as bytes (tobytes() is C order: frame by frame), which
            # lameenc hands to lame_encode_buffer_interleaved
            encoded = self._lame.encode(samples.tobytes())
        except RuntimeError as exc:  # lameenc's only error
            raise CodecError(f"LAME could not encode {self.path}: {exc}") from exc
        self._take(encoded)
        self._encoding = True
        self._frames += len(samples)
        if len(self._pending) >= _WRITE_THRESHOLD_BYTES:
            self._write_pending("writing")

    def flush(self) -> None:
        """Put what LAME has produced in the file and make the tag say so."""
        if self._closed:
            return
        self._write_pending("writing")
        try:
            self._write_tag()
        except OSError as exc:
            raise StorageError(f"{write_failure(exc)} writing {self.path}") from exc

    def close(self) -> None:
        """Drain LAME, write the exact padding, close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._encoding:
                try:
                    self._take(self._lame.flush())
                except RuntimeError as exc:
                    raise CodecError(f"LAME could not finish {self.path}: {exc}") from exc
            self._write_pending("finishing")
            try:
                self._write_tag()
            except OSError as exc:
                raise StorageError(f"{write_failure(exc)} finishing {self.path}") from exc
        finally:
            self._close_fd()

    def __enter__(self) -> Mp3Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _take(self, data: bytes | bytearray) -> None:
        if data:
            self._scanner.feed(data)
            self._pending += data

    def _write_pending(self, doing: str) -> None:
        if not self._pending:
            return
        written = len(self._pending)
        try:
            _write_all(self._fd, self._pending)
        except _PartialWrite as exc:
            written = exc.written
            raise StorageError(f"{write_failure(exc.error)} {doing} {self.path}") from exc.error
        finally:
            # what reached the file counts, whatever happened to the rest
            self._music_crc = crc16(memoryview(self._pending)[:written], self._music_crc)
            self._file_bytes += written
            del self._pending[:written]

    def _lame_frames(self) -> int:
        """LAME's frames that a tag written now counts."""
        complete: int = self._scanner.frames
        if self._closed:
            return complete
        # LAME's output stops inside the frame it encoded last: after that frame's main
        # data, where the next frame's main data will go (ISO/IEC 11172-3 §2.4.1.7: a
        # frame's main data starts at or before its header, never after its end). That
        # frame decodes already, so it counts, with zeros standing in for the rest of its
        # bytes until the real ones overwrite them: one frame less held back.
        partial: bool = self._scanner.missing_bytes > 0
        return complete + partial

    def _decodable(self, lame_frames: int) -> int:
        """Input samples that ``lame_frames`` of LAME's frames decode to, before close."""
        decodable: int = lame_frames * self._spf - LAME_DELAY - DECODER_DELAY
        return max(0, decodable)

    def _write_tag(self) -> None:
        # Called only when everything encoded is in the file.
        lame_frames = self._lame_frames()
        stream_bytes = self._file_bytes
        music_crc = self._music_crc
        missing = self._scanner.missing_bytes if lame_frames > self._scanner.frames else 0
        if missing:
            # beyond the file offset, which pwrite does not move: the next write lands on them
            zeros = bytes(missing)
            if os.pwrite(self._fd, zeros, self._file_bytes) != missing:
                raise OSError(errno.EIO, "short write")
            stream_bytes += missing
            music_crc = crc16(zeros, music_crc)
        frames = 1 + lame_frames  # the silent frame first
        delay = self._spf + LAME_DELAY
        if self._closed and self._encoding:
            padding = frames * self._spf - delay - self._frames
        elif self._decodable(lame_frames) > 0:
            padding = DECODER_DELAY
        else:
            # nothing to play yet: say so in a way libmpg123 accepts (its first sample must
            # lie inside the stream, so no delay, and all of it padding)
            delay, padding = 0, frames * self._spf
        tag = InfoTag(
            frames=frames,
            stream_bytes=stream_bytes,
            encoder_delay=delay,
            padding=padding,
            music_crc=music_crc,
            lame_quality=self.quality,
        )
        frame = info_frame(self.header, tag)
        if os.pwrite(self._fd, frame, 0) != len(frame):
            raise OSError(errno.EIO, "short write of the MP3 Info frame")

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
