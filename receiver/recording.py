"""A stream's recording: the sink that writes it to disk, part by part (WAV, MP3, FLAC, Ogg).

Its files are created with the stream's first audio (a stream that never sends any
leaves nothing behind) and written off the event loop (micwire.receiver.parts: batches,
a flush a second, crash-safe headers). A stream continued after a restart of the receiver
is a new part of the recording it continues: new files, listed in the same sidecar
(micwire.receiver.storage). Its overflow policy is back-pressure: at most 10 s of audio
wait for the disk, then the stream stops reading from its sender (TCP slows the sender
down) — nothing is dropped, which is why :meth:`Recording.deliver` is the one sink
method that may wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ..common.protocol import StreamParams
from ..common.sidecar import Sidecar, SidecarPart
from .config import ReceiverConfig
from .parts import Part
from .sinks import Delivery
from .storage import Previous, write_sidecar

log = logging.getLogger("micwire.receiver")


class Recording:
    def __init__(
        self,
        config: ReceiverConfig,
        stream: str,
        params: StreamParams,
        start: datetime,
        about: Callable[[], Sidecar],
        previous: Previous | None,
    ) -> None:
        self.config = config
        self.stream = stream
        self.params = params
        self.start = start
        #: What the sidecar says of the stream, asked for when the files are made.
        self._about = about
        #: The recording this stream continues (after a restart of the receiver).
        self.previous = previous
        #: This connection's part (None until the stream's first audio here).
        self.part: Part | None = None
        self._reconnects = 0

    @property
    def on(self) -> bool:
        return self.config.record_dir is not None

    @property
    def reconnects(self) -> int:
        return self._reconnects

    @reconnects.setter
    def reconnects(self, count: int) -> None:
        """The stream's sender's reconnections (the sidecar keeps them)."""
        self._reconnects = count
        if self.part is not None:
            self.part.reconnects = count

    @property
    def paths(self) -> list[str]:
        """This part's files."""
        return [p.name for p in self.part.paths] if self.part is not None else []

    @property
    def end(self) -> int | None:
        """Timeline position the files reach (what an acknowledgement says)."""
        return self.part.end if self.part is not None else None

    @property
    def backlog_s(self) -> float:
        return self.part.backlog_s if self.part is not None else 0.0

    async def deliver(self, delivery: Delivery, origin: int) -> None:
        """Queue a delivery's segments; waits only while a slow disk has a lot waiting.
        ``origin``: where the part starts on the stream's timeline, should this be its
        first audio. Raises StorageError when the recording cannot be written."""
        if not delivery.segments or not self.on:
            return
        if self.part is None:
            self.part = await self._open(origin)
        for segment in delivery.segments:
            await self.part.write(segment)

    async def _open(self, origin: int) -> Part:
        cfg = self.config
        assert cfg.record_dir is not None
        previous = self.previous
        part = await Part.create(
            cfg.record_dir,
            self.stream,
            cfg.formats,
            self.params.rate_hz,
            self.params.channels,
            self.start,
            self._about(),
            origin,
            previous.path if previous is not None else None,
            previous.record.parts if previous is not None else None,
        )
        part.reconnects = self._reconnects
        log.info("stream %r: recording to %s", self.stream, ", ".join(p.name for p in part.paths))
        return part

    def refresh(self) -> None:
        """The stream's description in the sidecar, as it stands now (every second)."""
        if self.part is not None:
            self.part.describe(self._about())

    async def close(self, outcome: str) -> None:
        """Finalise: this part's files and the sidecar; a stream continued here without
        new audio updates its earlier parts' entry. Raises StorageError."""
        if self.part is not None:
            self.part.describe(self._about())
            await self.part.close(outcome)
        elif self.previous is not None:
            await asyncio.to_thread(self._close_previous, outcome)

    def _close_previous(self, outcome: str) -> None:
        assert self.previous is not None
        self.previous.record.outcome = outcome
        write_sidecar(self.previous.path, self.previous.record)

    @property
    def name(self) -> str | None:
        """The file the stream's "done" names: its latest part's first file."""
        if self.part is not None:
            return self.part.paths[0].name
        if self.previous is None or not self.previous.record.parts[-1].files:
            return None
        return self.previous.record.parts[-1].files[0]

    def views(self) -> dict[str, Any]:
        """The recording as the page shows it (docs/PROTOCOL.md §10): ``parts``, one per
        part in order (when it began by the sender's clock, how long it is, how it ended,
        its files and their formats), its ``sidecar``, and ``recordings``, every file in
        one list (what scripts read before parts were given). From what the writers
        measured: a page view never touches the disk."""
        if not self.on:
            return {"parts": [], "sidecar": None, "recordings": []}
        parts: list[SidecarPart] = []
        sizes: dict[str, int] = {}
        sidecar: str | None = None
        if self.previous is not None:  # its earlier parts, then the one recorded here
            parts.extend(self.previous.record.parts)
            sizes.update(self.previous.sizes)
            sidecar = self.previous.path.name
        if self.part is not None:
            parts.append(self.part.part())
            sizes.update(self.part.sizes)
            sidecar = self.part.sidecar.name
        start = self.start.timestamp()
        rate = self.params.rate_hz
        views: list[dict[str, Any]] = []
        every: list[dict[str, Any]] = []  # the files, without their format
        for number, part in enumerate(parts, 1):
            files: list[dict[str, Any]] = []
            for name in part.files:
                entry = _file_view(name, sizes)
                if entry is not None:
                    every.append(entry)
                    files.append({**entry, "format": name.rpartition(".")[2].lower()})
            views.append(
                {
                    "part": number,
                    "start_utc": round(start + part.origin / rate, 3),
                    "seconds": round(part.samples / rate, 3),
                    "outcome": part.outcome,
                    "files": files,
                }
            )
        sidecar_view = _file_view(sidecar, sizes) if sidecar is not None else None
        return {
            "parts": views,
            "sidecar": sidecar_view,
            "recordings": every + ([sidecar_view] if sidecar_view is not None else []),
        }


def _file_view(name: object, sizes: dict[str, int]) -> dict[str, Any] | None:
    """A file of the record directory as the page links it; None when it is not there
    (or the sidecar names something that is not a file of the directory)."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        return None
    size = sizes.get(name)
    if size is None:
        return None
    return {"name": name, "url": f"/recordings/{quote(name)}", "bytes": size}
