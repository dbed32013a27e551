"""Recording a stream to disk while it plays: WAV, MP3, FLAC or Ogg via soundfile.

Writes happen off the event loop, in batches: the session hands segments to an
``asyncio.Queue`` (bounded, so a slow disk slows the sender down through TCP rather than
losing audio), and a writer task writes everything queued in one ``to_thread`` call.
Crash safety: every file is flushed at least every second; WAV headers are rewritten on
every write (libsndfile's ``SFC_SET_UPDATE_HEADER_AUTO``), so a receiver killed with
SIGKILL leaves files a player opens, missing at most the last second. A sidecar
``<name>.json`` beside the files says when the stream started, its format, every gap
(where silence stands in for audio that never arrived), and whether it ended cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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


def _part_of(sidecar: dict[str, Any]) -> dict[str, Any]:
    keys = ("files", "origin", "samples", "gaps", "outcome")
    return {k: sidecar[k] for k in keys if k in sidecar}


_SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # sndfile.h
_SFC_SET_BITRATE_MODE = 0x1305
_SF_BITRATE_MODE_CONSTANT = 0


def _make_crash_safe(f: sf.SoundFile, container: str) -> None:
    """WAV: libsndfile rewrites the header (data length) after every write. MP3: constant
    bitrate, so a file cut short by a crash still tells decoders its true length (a VBR
    file's length is only known from the header written at close)."""
    try:
        if container == "WAV":
            sf._snd.sf_command(f._file, _SFC_SET_UPDATE_HEADER_AUTO, sf._ffi.NULL, 1)
        elif container == "MP3":
            mode = sf._ffi.new("int*", _SF_BITRATE_MODE_CONSTANT)
            sf._snd.sf_command(f._file, _SFC_SET_BITRATE_MODE, mode, sf._ffi.sizeof("int"))
    except AttributeError:  # soundfile internals moved: the 1 s flush still bounds the loss
        log.warning("cannot make %s recordings crash-safe with this soundfile version", container)


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
        info: dict[str, Any] | None = None,
        previous_sidecar: Path | None = None,
    ) -> None:
        self.channels = channels
        self.gaps: list[dict[str, int]] = []
        self.outcome = "recording"
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
                _make_crash_safe(self._files[-1], fmt.container)
        except AudioFormatError as exc:
            self._close_files()
            raise AudioFormatError(f"cannot record this stream: {exc}") from exc
        except (sf.LibsndfileError, OSError) as exc:
            self._close_files()
            raise StorageError(f"cannot record this stream: {exc}") from exc
        # a stream resumed after a receiver restart continues in a new part, listed in the
        # sidecar of its first part
        self.sidecar = previous_sidecar or self.paths[0].with_suffix(".json")
        self._earlier_parts: list[dict[str, Any]] = []
        if previous_sidecar is not None:
            with contextlib.suppress(OSError, ValueError):
                old = json.loads(previous_sidecar.read_text())
                self._earlier_parts = old.get("parts") or [_part_of(old)]
        self._info = {
            "stream": stream,
            "start_utc": start.isoformat(),
            "rate_hz": rate_hz,
            "channels": channels,
            "files": [p.name for p in self.paths],
            **(info or {}),
        }
        self._write_sidecar()
        self._queue: asyncio.Queue[Segment | None] = asyncio.Queue(queue_segments)
        self._writer = asyncio.create_task(self._write_loop())
        self._last_flush = time.monotonic()

    async def write(self, segment: Segment) -> None:
        if self._writer.done():
            self._writer.result()  # surface a disk error to the session
        await self._queue.put(segment)

    async def close(self, outcome: str = "complete") -> None:
        """Write what is queued, then finalise every file (headers, MP3 tail) and the sidecar."""
        if not self._writer.done():
            await self._queue.put(None)
        try:
            await self._writer
        finally:
            self.outcome = outcome
            await asyncio.to_thread(self._close_files)
            self._write_sidecar()

    def _write_sidecar(self) -> None:
        data = {
            **self._info,
            "samples": self.samples_written,
            "seconds": round(self.samples_written / self.rate_hz, 6),
            "gaps": self.gaps,
            "outcome": self.outcome,
        }
        data["parts"] = [*self._earlier_parts, _part_of(data)]
        temporary = self.sidecar.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(temporary, self.sidecar)  # never a half-written sidecar

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
                self.gaps.append({"at_sample": self.samples_written, "samples": segment})
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
            self._write_sidecar()
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
