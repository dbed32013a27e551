"""Recording a stream to disk while it plays: WAV, MP3, FLAC or Ogg via soundfile.

Writes happen off the event loop, in batches: the session hands segments to an
``asyncio.Queue`` (bounded, so a slow disk slows the sender down through TCP rather than
losing audio), and a writer task writes everything queued in one ``to_thread`` call.
Each file is flushed at least every second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from micwire.common.assembly import Segment
from micwire.common.audiofile import get_format
from micwire.common.errors import AudioFormatError, StorageError
from micwire.common.names import recording_filename

log = logging.getLogger("micwire.receiver")
FLUSH_INTERVAL_S = 1.0


def _create_unique(directory: Path, filename: str) -> Path:
    """Create ``filename`` in ``directory`` without ever overwriting: add -2, -3, ..."""
    stem, ext = os.path.splitext(filename)
    for n in range(1, 1000):
        path = directory / (filename if n == 1 else f"{stem}-{n}{ext}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many recordings named {filename} in {directory}")


class Recording:
    def __init__(
        self,
        directory: Path,
        stream: str,
        formats: tuple[str, ...],
        rate_hz: int,
        channels: int,
        start: datetime,
        queue_segments: int = 500,
    ) -> None:
        self.channels = channels
        self.rate_hz = rate_hz
        self.paths: list[Path] = []
        self._files: list[sf.SoundFile] = []
        self.samples_written = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name in formats:
                fmt = get_format(name)
                fmt.check(rate_hz, channels)
                path = _create_unique(directory, recording_filename(stream, start, fmt.name))
                self.paths.append(path)
                self._files.append(
                    sf.SoundFile(
                        path,
                        "w",
                        samplerate=rate_hz,
                        channels=channels,
                        format=fmt.container,
                        subtype=fmt.subtype,
                    )
                )
        except AudioFormatError as exc:
            self._close_files()
            raise AudioFormatError(f"cannot record this stream: {exc}") from exc
        except (sf.LibsndfileError, OSError) as exc:
            self._close_files()
            raise StorageError(f"cannot record this stream: {exc}") from exc
        self._queue: asyncio.Queue[Segment | None] = asyncio.Queue(queue_segments)
        self._writer = asyncio.create_task(self._write_loop())
        self._last_flush = time.monotonic()

    async def write(self, segment: Segment) -> None:
        if self._writer.done():
            self._writer.result()  # surface a disk error to the session
        await self._queue.put(segment)

    async def close(self) -> None:
        """Write what is queued, then finalise every file (headers, MP3 tail)."""
        if not self._writer.done():
            await self._queue.put(None)
        try:
            await self._writer
        finally:
            await asyncio.to_thread(self._close_files)

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and batch[-1] is not None:
                batch.append(self._queue.get_nowait())
            end = batch[-1] is None
            segments = [s for s in batch if s is not None]
            if segments:
                await asyncio.to_thread(self._write_segments, segments)
            if end:
                return

    def _write_segments(self, segments: list[Segment]) -> None:
        for segment in segments:
            if isinstance(segment, int):  # a gap: exactly that much silence, in 1 s pieces
                left = segment
                while left:
                    n = min(left, self.rate_hz)
                    self._write(np.zeros((n, self.channels), dtype=np.int16))
                    left -= n
            else:
                self._write(segment)
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            for f in self._files:
                f.flush()
            self._last_flush = time.monotonic()

    def _write(self, samples: Any) -> None:
        for f in self._files:
            f.write(samples)
        self.samples_written += len(samples)

    def _close_files(self) -> None:
        for f in self._files:
            try:
                f.close()
            except Exception as exc:
                log.error("could not finalise %s: %s", f.name, exc)
        self._files = []
