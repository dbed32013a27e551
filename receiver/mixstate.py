"""Every stream's mix settings, kept across reconnects and restarts (``mix.json`` in the
receiver's state directory). They change only what is heard, never what is recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.errors import MixSettingError
from ..common.mixer import MasterSettings, MixBoard, MixSettings

if TYPE_CHECKING:
    from .mixer import Mixers

#: The file in the state directory that keeps every stream's mix settings.
MIX_STATE = "mix.json"
#: Settings kept for at most this many stream names (those changed last): names that
#: come and go must not grow the file for ever.
MAX_STREAMS = 1000
#: Changes are written together, this long after the first (a fader being dragged, or a
#: flood of PATCHes, writes the file a few times a second at most).
SAVE_AFTER_S = 0.5
log = logging.getLogger("micwire.receiver")


class MixState:
    """Every stream's mix settings (:class:`~micwire.common.mixer.MixBoard`), kept in
    ``path`` (None: in memory only) so that they outlive a stream's reconnects and a
    restart of the receiver. Settings change only what is heard, never what is recorded."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.board = MixBoard()
        self._mixers: Mixers | None = None
        self._save_due: asyncio.TimerHandle | None = None
        self._dirty = False
        if path is not None and path.exists():
            try:
                self.board = MixBoard.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, MixSettingError) as exc:
                log.warning("the mix settings in %s were not read (%s): all at 0 dB", path, exc)

    def settings(self, stream: str) -> MixSettings:
        return self.board.settings(stream)

    def master(self, device: str) -> MasterSettings:
        return self.board.master(device)

    def patch_master(self, device: str, body: object) -> MasterSettings:
        """Apply a PATCH body to a device's master (:class:`MixSettingError` if wrong)."""
        master = self.board.patch_master(device, body)
        self._changed()
        if self._mixers is not None:
            self._mixers.set_master(device, master)
        return master

    def patch(self, stream: str, body: object) -> MixSettings:
        """Apply a PATCH body (:class:`MixSettingError` if it is wrong: nothing changes),
        keep it, and let the stream's voices hear it."""
        settings = self.board.patch(stream, body)
        for name in self.board.forget_oldest(MAX_STREAMS):
            log.info("mix settings of %r forgotten (only %d streams' are kept)", name, MAX_STREAMS)
        self._changed()
        if self._mixers is not None:
            self._mixers.set_settings(stream, settings)
        return settings

    def _changed(self) -> None:
        """Write the file soon (at once when no event loop runs: a script, a test)."""
        self._dirty = True
        if self.path is None or self._save_due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._save_due = loop.call_later(SAVE_AFTER_S, self.flush)

    def flush(self) -> None:
        """Write what changed now (the receiver does at its stop)."""
        if self._save_due is not None:
            self._save_due.cancel()
            self._save_due = None
        if self.path is None or not self._dirty:
            return
        self._dirty = False
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self.board.to_json(), indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("the mix settings could not be kept in %s: %s", self.path, exc)
