"""A sender's resume state on disk: one small file per (receiver, stream name).

In ``resume/`` of micwire's state directory (``$XDG_STATE_HOME/micwire``, default
``~/.local/state/micwire``; ``--state DIR``), ``<stem>.json`` holds the
:class:`~micwire.common.resume.ResumeEntry` of the stream a sender process is sending,
from the receiver's first accept until the receiver confirms the stream (``done``); then
it is removed. A process that died before that (killed, or stopped while its receiver was
down) leaves it, so the next one can end that stream (sender/earlier.py).

``<stem>.lock`` is held (``fcntl.flock``) for as long as a process owns the entry: a second
``micwire send`` with the same receiver and name on the same machine cannot take it, and
so leaves the first one's stream alone (the receiver refuses it, as it should). The lock
goes with the process, however it ends.

The entry holds a secret: written atomically (a temporary file renamed over it), mode
0600, in a 0700 directory (and micwire's state directory 0700, if this creates it). A
state directory that cannot be written is said once; the stream goes on without (only a
restart of this sender will not find its stream).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..common.resume import ResumeEntry, entry_stem

try:
    import fcntl
except ImportError:  # Windows: no flock; no resume state there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("micwire.sender")
#: The sender's part of micwire's state directory (the receiver keeps its own files there).
RESUME_DIR = "resume"


class StreamState:
    """The entry of one (receiver, stream name), for the process that holds its lock."""

    def __init__(self, state_dir: Path, receiver: str, stream: str) -> None:
        self.directory = state_dir / RESUME_DIR
        stem = entry_stem(receiver, stream)
        self.path = self.directory / f"{stem}.json"
        self.lock_path = self.directory / f"{stem}.lock"
        self._lock_fd: int | None = None
        self._failed = False  # said once; nothing more is tried
        self._saved: ResumeEntry | None = None

    def claim(self) -> bool:
        """Take the entry's lock if no other process holds it. True: this process owns
        the entry now (whatever is in it was left by a process that has ended)."""
        if self._lock_fd is not None:
            return True
        if fcntl is None or self._failed:
            return False
        try:
            self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.mkdir(mode=0o700, exist_ok=True)
            while True:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False  # another process sends this stream
                # the holder before us may have removed the lock file as it let go: a lock
                # on a file no longer there locks nothing; take the new one
                with contextlib.suppress(FileNotFoundError):
                    held, named = os.fstat(fd), os.stat(self.lock_path)
                    if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                        self._lock_fd = fd
                        return True
                os.close(fd)
        except OSError as exc:
            self._fail(exc)
            return False

    def earlier(self) -> ResumeEntry | None:
        """The entry an earlier process left (call once this process owns it)."""
        if self._lock_fd is None:
            return None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s (%s); starting afresh", self.path, exc)
            return None
        entry = ResumeEntry.parse(text)
        if entry is None:
            log.warning("%s is not a resume state micwire can use; starting afresh", self.path)
        return entry

    def save(self, entry: ResumeEntry) -> None:
        """Keep ``entry`` (the stream this process sends), if this process owns the entry
        or can take it now (a process that held it has ended)."""
        if entry == self._saved or not self.claim():
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)  # a left-over temporary file may be wider
                f.write(entry.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
            self._fsync_directory()
            self._saved = entry
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self._fail(exc)

    def forget(self) -> None:
        """The stream is over for good (confirmed, or ended): remove its entry."""
        if self._lock_fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
            self._saved = None
        except OSError as exc:
            self._fail(exc)

    def release(self) -> None:
        """Let go of the lock (the process ends). The lock file goes too, unless an entry
        is left for the next process."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if not self.path.exists():
                self.lock_path.unlink()
        os.close(fd)

    def _fsync_directory(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _fail(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.warning(
                "cannot keep this stream's resume state in %s (%s): if this sender is "
                "restarted before the receiver confirms the stream, the receiver will hold "
                "the name for the old stream for a while",
                self.directory,
                exc.strerror or exc,
            )
