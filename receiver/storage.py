"""The sidecar JSON beside a stream's recordings, and finding it again after a restart.

A sidecar says what the recording is (stream, format, start, peer), every gap (where
silence stands in for audio that never arrived) and how each part ended. A stream that a
restarted receiver continues gets a new part (new files) listed in the same sidecar, so
the parts together hold the stream. The sidecar keeps a digest of the stream's resume
secret, never the secret itself (the record directory may be shared for downloads).

Sidecars are written atomically (a temporary file renamed over the old one), so a crash
never leaves half a sidecar; when the disk is too full for the temporary file, the old
one is overwritten in place (each sidecar is padded with spare room for that), and
otherwise left as it was. A file
that is not a sidecar of ours (any other ``*.json``) is never read as one nor written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from ..common.errors import AudioFormatError, StorageError, write_failure
from ..common.names import sanitize_stream_name
from ..common.outcome import INTERRUPTED
from ..common.protocol import StreamParams
from . import wav

log = logging.getLogger("micwire.receiver")
PART_KEYS = ("files", "origin", "samples", "gaps", "outcome")


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def storage_error(exc: BaseException, what: str, directory: Path | None = None) -> StorageError:
    """One sentence for a failed write, naming the cause people can fix. (libsndfile says
    only "System error." when it cannot open a file: the disk is asked why.)"""
    code = None
    if "System error" in str(exc) and directory is not None:
        with contextlib.suppress(OSError):
            disk = os.statvfs(directory)
            if disk.f_bavail * disk.f_frsize < 256 * 1024:
                code = errno.ENOSPC
    why = write_failure(exc, code)
    return StorageError(f"{why} ({what})")


#: Sidecars are padded (JSON allows trailing white space) to a multiple of this, with at
#: least SIDECAR_SLACK bytes to spare: room to rewrite one in place on a full disk.
SIDECAR_BLOCK = 4096
SIDECAR_SLACK = 1024


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically; see the module docstring for a full disk.
    Raises StorageError if neither way works (the old file is then unchanged)."""
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    size = len(text.encode("utf-8")) + SIDECAR_SLACK
    text = text.ljust(len(text) + (-size % SIDECAR_BLOCK) + SIDECAR_SLACK)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
        return
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        failure = exc
    encoded = text.encode("utf-8")
    try:
        size = path.stat().st_size
    except OSError:
        size = -1
    encoded = encoded.rstrip(b" ")
    if 0 <= len(encoded) <= size:
        try:  # rewriting blocks the file already has needs no free space
            with open(path, "r+b") as f:
                f.write(encoded + b" " * (size - len(encoded)))
            return
        except OSError as exc:
            failure = exc
    raise storage_error(failure, f"writing {path.name}") from failure


@dataclass
class Previous:
    """A stream's recording from before a restart, which a resuming sender continues."""

    sidecar: Path
    data: dict[str, Any]
    #: Timeline position its recording reaches (where the next part starts).
    position: int
    #: Its files' sizes in bytes (the sidecar's too), when it was found.
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Did the stream end with its last packet (its sender may only come back to
        hear that confirmed)?"""
        return bool(self.data["parts"][-1].get("outcome") == "complete")

    @property
    def samples(self) -> int:
        """Samples over all its parts."""
        return sum(int(part["samples"]) for part in self.data["parts"])

    @property
    def reconnects(self) -> int:
        """Its sender's reconnections so far (0 in a sidecar from before they were kept)."""
        count = self.data.get("reconnects")
        return count if type(count) is int and count >= 0 else 0


def is_sidecar(data: Any) -> bool:
    """Does this look like one of our sidecars, with every field a resume relies on?"""
    if not isinstance(data, dict):
        return False
    parts = data.get("parts")
    return (
        isinstance(data.get("stream"), str)
        and isinstance(data.get("stream_id"), str)
        and isinstance(data.get("resume_secret_sha256"), str)
        and isinstance(parts, list)
        and bool(parts)
        and all(
            isinstance(p, dict)
            and isinstance(p.get("files"), list)
            and type(p.get("origin")) is int
            and type(p.get("samples")) is int
            for p in parts
        )
    )


#: A frame count libsndfile gives for a FLAC file whose header was never finished.
_UNKNOWN_LENGTH = 2**40


def decodable_frames(path: Path) -> int:
    """How many frames of a file (perhaps cut short by a crash) can be decoded. WAV and
    MP3 headers are kept current; a FLAC file's length is known only once it is closed,
    so it is counted by decoding until the data ends."""
    frames = int(sf.info(str(path)).frames)
    if frames < _UNKNOWN_LENGTH:
        return frames
    count = 0
    with contextlib.suppress(RuntimeError), sf.SoundFile(str(path)) as f:
        while block := len(f.read(65536, dtype="int16")):
            count += block
    return count


def _part_end(directory: Path, part: dict[str, Any]) -> int:
    """Where a part's recording reaches after a crash: where every one of its files has
    audio (the shortest; a WAV longer than that is cut to it, so WAV parts join exactly;
    an MP3, FLAC or Ogg file may hold a little more than the part's ``samples``)."""
    samples: int | None = None
    for name in part["files"]:
        if not isinstance(name, str) or "/" in name:
            continue
        with contextlib.suppress(RuntimeError, OSError):
            frames = decodable_frames(directory / name)
            samples = frames if samples is None else min(samples, frames)
    if samples is None:  # no file could be read: what the sidecar last said
        samples = int(part["samples"])
    for name in part["files"]:
        if isinstance(name, str) and name.endswith(".wav") and "/" not in name:
            with contextlib.suppress(AudioFormatError, OSError):
                wav.truncate(directory / name, samples)
    part["samples"] = samples
    return int(part["origin"]) + samples


def find_previous(
    directory: Path, stream: str, stream_id: str, secret: str, params: StreamParams
) -> Previous | None:
    """The latest sidecar of this stream (same name, id, secret and format), if any.
    Blocking: run it off the event loop. Looks only at files named after the stream."""
    pattern = f"{sanitize_stream_name(stream)}-*.json"
    digest = secret_digest(secret)
    found: list[tuple[str, Path, dict[str, Any]]] = []
    for path in directory.glob(pattern):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not is_sidecar(data):
            continue
        same = (
            data["stream"] == stream
            and data["stream_id"] == stream_id
            and hmac.compare_digest(data["resume_secret_sha256"], digest)
            and (data.get("codec"), data.get("rate_hz"), data.get("channels"))
            == (params.codec, params.rate_hz, params.channels)
        )
        if same:
            found.append((str(data.get("received_utc", "")), path, data))
    if not found:
        return None
    _, path, data = max(found, key=lambda item: (item[0], item[1].name))
    last = data["parts"][-1]
    position = _part_end(directory, last)
    if last.get("outcome") in (None, "recording"):
        last["outcome"] = INTERRUPTED.text
    sizes = {}
    for name in [*data.get("files", []), path.name]:
        if isinstance(name, str) and "/" not in name:
            with contextlib.suppress(OSError):
                sizes[name] = (directory / name).stat().st_size
    return Previous(path, data, position, sizes)


def repair_interrupted(directory: Path, owned: Callable[[str], bool] | None = None) -> list[Path]:
    """After a crash: bring sidecars that still say "recording" up to date with their
    files, and say the part was interrupted. Run before the receiver takes any connection
    (nothing else writes them then); with ``--workers``, each worker repairs the streams it
    ``owned``. Blocking: run it off the event loop. Returns the sidecars it repaired."""
    repaired = []
    for path in directory.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not is_sidecar(data) or data.get("outcome") != "recording":
            continue
        if owned is not None and not owned(data["stream"]):
            continue
        last = data["parts"][-1]
        _part_end(directory, last)
        last["outcome"] = data["outcome"] = INTERRUPTED.text
        data["samples"] = sum(int(part["samples"]) for part in data["parts"])
        try:
            write_json(path, data)
        except StorageError:
            continue
        repaired.append(path)
    return repaired
