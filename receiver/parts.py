"""One part of a stream's recording on disk: its files (WAV, MP3, FLAC, Ogg) and sidecar.

Writes happen off the event loop, in batches: :meth:`Part.write` only queues a
segment; a writer task hands everything queued to a thread once about
:data:`BATCH_S` of audio is waiting, or at least every :data:`FLUSH_INTERVAL_S`. A slow
disk slows the sender down (through TCP) rather than losing audio: at most
:data:`MAX_PENDING_S` waits in memory.

Crash safety: every file is flushed at least every second. WAV is a plain 16-bit PCM
WAV up to 4 GiB and RF64 beyond (a plain WAV header cannot count past 4 GiB), written
straight to the file with its header rewritten on every write (micwire.receiver.wav);
MP3 is constant bitrate with a LAME tag kept current (:mod:`micwire.receiver.mp3`), so
a file cut short still decodes aligned, to its length.
A receiver killed with SIGKILL leaves files a player opens, missing at most the last
second. The sidecar (:mod:`micwire.receiver.storage`) is rewritten each
second with the counts.

A write that fails (disk full, ...) is a :class:`~micwire.common.errors.StorageError`
that says so; what was written is finalised and the sidecar says the recording failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..common.assembly import Segment, segment_length
from ..common.audiofile import get_format
from ..common.errors import AudioFormatError, StorageError
from ..common.names import recording_filename
from ..common.sidecar import Gap, Sidecar, SidecarPart
from .storage import storage_error, write_sidecar
from .writers import Samples, Writer, create_unique, open_writer

log = logging.getLogger("micwire.receiver")
FLUSH_INTERVAL_S = 1.0
#: Audio gathered before a batch goes to the writer thread.
BATCH_S = 0.25
#: Audio waiting for a slow disk before the stream is slowed down.
MAX_PENDING_S = 10.0
#: Silence for a gap is written in pieces of this length (a long gap never means one huge
#: allocation).
GAP_PIECE_S = 1.0


class Part:
    """One part of a stream's recording: its files, and its entry in the sidecar."""

    # set by create(), on the event loop
    _wake: asyncio.Event
    _drained: asyncio.Event
    _writer: asyncio.Task[None]

    def __init__(
        self,
        directory: Path,
        stream: str,
        formats: tuple[str, ...],
        rate_hz: int,
        channels: int,
        start: datetime,
        about: Sidecar,
        origin: int = 0,
        sidecar: Path | None = None,
        earlier_parts: list[SidecarPart] | None = None,
    ) -> None:
        """Blocking (creates files): call through :meth:`create`."""
        self.rate_hz = rate_hz
        self.channels = channels
        self.origin = origin
        self.gaps: list[Gap] = []
        self.outcome = "recording"
        self.paths: list[Path] = []
        self._writers: list[Writer] = []
        self.samples_written = 0
        #: How often the stream's sender reconnected (kept in the sidecar, so a stream
        #: continued after a restart counts on from there).
        self.reconnects = 0
        #: Set when a write failed; every later write raises it.
        self.failure: StorageError | None = None
        try:
            directory.mkdir(parents=True, exist_ok=True)  # it may have been removed meanwhile
            for name in formats:
                fmt = get_format(name)
                fmt.check(rate_hz, channels)
                path = create_unique(directory, recording_filename(stream, start, fmt.name))
                self.paths.append(path)
                self._writers.append(open_writer(path, fmt, rate_hz, channels))
        except AudioFormatError as exc:
            self._abandon()
            raise AudioFormatError(f"cannot record this stream: {exc}") from exc
        except (sf.LibsndfileError, OSError, ValueError) as exc:
            self._abandon()
            raise storage_error(exc, f"creating a recording in {directory}", directory) from exc
        # a stream continued after a receiver restart is a new part of the first sidecar
        self.sidecar = sidecar or self.paths[0].with_suffix(".json")
        self._earlier_parts = earlier_parts or []
        #: What the sidecar says of the stream (its parts and totals are this part's own)
        self._about = about
        #: Each file's size in bytes (the sidecar's too), measured in the writer's thread
        #: after each flush: a page view reads them, never the disk.
        self.sizes: dict[str, int] = {}
        try:
            self.write_sidecar()
        except StorageError:
            self._abandon()
            raise
        self._pending: list[Segment] = []
        self._pending_samples = 0
        self._writing_samples = 0  # handed to the writer thread, not yet written
        self._batch_samples = max(1, int(BATCH_S * rate_hz))
        self._max_pending = int(MAX_PENDING_S * rate_hz)
        self._closing = False
        self._last_flush = time.monotonic()

    @classmethod
    async def create(cls, *args: Any, **kwargs: Any) -> Part:
        """Create the files off the event loop, then start writing."""
        loop = asyncio.get_running_loop()
        recording: Part = await loop.run_in_executor(None, lambda: cls(*args, **kwargs))
        recording._wake = asyncio.Event()
        recording._drained = asyncio.Event()
        recording._writer = loop.create_task(recording._write_loop())
        return recording

    @property
    def end(self) -> int:
        """Timeline position the files reach."""
        return self.origin + self.samples_written

    @property
    def backlog_s(self) -> float:
        """Audio received and not yet written (a slow disk shows here first)."""
        return (self._pending_samples + self._writing_samples) / self.rate_hz

    async def write(self, segment: Segment) -> None:
        """Queue a segment; waits only while a slow disk has a lot waiting already."""
        if self.failure is not None:
            raise self.failure
        self._pending.append(segment)
        self._pending_samples += segment_length(segment)
        if self._pending_samples >= self._batch_samples:
            self._wake.set()
        while self._pending_samples > self._max_pending and self.failure is None:
            self._drained.clear()
            await self._drained.wait()
        if self.failure is not None:
            raise self.failure

    async def close(self, outcome: str = "complete") -> None:
        """Write what is queued, then finalise every file (headers, MP3 tail) and the sidecar."""
        self._closing = True
        self._wake.set()
        try:
            await asyncio.shield(self._writer)
        except StorageError:
            pass  # already recorded in self.failure
        finally:
            if self.failure is not None:
                outcome = f"failed: {self.failure}"
            self.outcome = outcome
            await asyncio.to_thread(self._finalise)
        if self.failure is not None:
            raise self.failure

    def _finalise(self) -> None:
        self._close_files()
        try:
            self.write_sidecar()
        except StorageError as exc:
            log.error("%s", exc)

    def describe(self, about: Sidecar) -> None:
        """What the sidecar says of the stream from now on (the sender's clock is measured
        as the stream goes); written with the next flush."""
        self._about = about

    def part(self) -> SidecarPart:
        """This part's entry in the sidecar, as it stands."""
        return SidecarPart(
            [p.name for p in self.paths], self.origin, self.samples_written, list(self.gaps),
            self.outcome,
        )  # fmt: skip

    def write_sidecar(self) -> None:
        record = replace(
            self._about,
            parts=[*self._earlier_parts, self.part()],
            rate_hz=self.rate_hz,
            channels=self.channels,
            outcome=self.outcome,
            reconnects=self.reconnects,
        )
        write_sidecar(self.sidecar, record)
        self._measure()

    def _measure(self) -> None:
        """Blocking: the files' sizes now."""
        sizes = {}
        for path in [*self.paths, self.sidecar]:
            with contextlib.suppress(OSError):
                sizes[path.name] = path.stat().st_size
        self.sizes = sizes

    async def _write_loop(self) -> None:
        """Hand batches to a thread; flush files and the sidecar every second."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            self._writing_samples = self._pending_samples
            batch, self._pending, self._pending_samples = self._pending, [], 0
            self._drained.set()
            flush = self._closing or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S
            if batch or flush:
                try:
                    await asyncio.to_thread(self._write_batch, batch, flush)
                except StorageError as exc:
                    self.failure = exc
                    self._drained.set()
                    raise
                finally:
                    self._writing_samples = 0
                if flush:
                    self._last_flush = time.monotonic()
            if self._closing and not self._pending:
                return

    def _write_batch(self, segments: list[Segment], flush: bool) -> None:
        """Write a batch: consecutive packets as one array (one write call, one header
        update per file, instead of one per packet), gaps as silence."""
        try:
            run: list[Samples] = []
            for segment in [*segments, 0]:  # the 0 ends the last run of audio
                if not isinstance(segment, int):
                    run.append(segment)
                    continue
                if run:
                    self._write(run[0] if len(run) == 1 else np.concatenate(run))
                    run = []
                if segment:  # a gap: exactly that much silence, in pieces
                    self.gaps.append(Gap(self.samples_written, segment))
                    piece = max(1, int(GAP_PIECE_S * self.rate_hz))
                    silence = np.zeros((min(segment, piece), self.channels), dtype=np.int16)
                    left = segment
                    while left:
                        n = min(left, piece)
                        self._write(silence[:n])
                        left -= n
            if flush:
                for writer in self._writers:
                    writer.flush()
        except StorageError:
            raise
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            raise storage_error(exc, f"writing {self.paths[0].name}", self.paths[0].parent) from exc
        if flush:
            self.write_sidecar()

    def _write(self, samples: Samples) -> None:
        for writer in self._writers:
            writer.write(samples)
        self.samples_written += len(samples)

    def _close_files(self) -> None:
        for writer, path in zip(self._writers, self.paths, strict=False):
            try:
                writer.close()
            except Exception as exc:
                log.error("could not finalise %s: %s", path.name, exc)
        self._writers = []

    def _abandon(self) -> None:
        """Creating the recording failed: remove what was made (empty files)."""
        self._close_files()
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.unlink()
