"""The sidecar JSON beside a stream's recordings, and finding it again after a restart.
What a sidecar says is :class:`micwire.common.sidecar.Sidecar` (typed, pure); this
module reads and writes the files.

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
from ..common.protocol import StreamParams
from ..common.sidecar import RECORDING, Sidecar, SidecarPart
from . import wav

log = logging.getLogger("micwire.receiver")


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


def write_sidecar(path: Path, record: Sidecar) -> None:
    """Replace the sidecar at ``path`` with ``record``. Raises StorageError."""
    write_json(path, record.to_json())


def read_sidecar(path: Path) -> Sidecar | None:
    """The sidecar at ``path``; None when it cannot be read or is not one of ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return Sidecar.parse(data)


@dataclass
class Previous:
    """A stream's recording from before a restart, which a resuming sender continues."""

    #: Its sidecar file, and what it says.
    path: Path
    record: Sidecar
    #: Timeline position its recording reaches (where the next part starts).
    position: int
    #: Its files' sizes in bytes (the sidecar's too), when it was found.
    sizes: dict[str, int] = field(default_factory=dict)


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


def _part_end(directory: Path, part: SidecarPart) -> int:
    """Where a part's recording reaches after a crash: where every one of its files has
    audio (the shortest; a WAV longer than that is cut to it, so WAV parts join exactly;
    an MP3, FLAC or Ogg file may hold a little more than the part's ``samples``)."""
    samples: int | None = None
    for name in part.files:
        if "/" in name:
            continue
        with contextlib.suppress(RuntimeError, OSError):
            frames = decodable_frames(directory / name)
            samples = frames if samples is None else min(samples, frames)
    if samples is None:  # no file could be read: what the sidecar last said
        samples = part.samples
    for name in part.files:
        if name.endswith(".wav") and "/" not in name:
            with contextlib.suppress(AudioFormatError, OSError):
                wav.truncate(directory / name, samples)
    part.samples = samples
    return part.end


def find_previous(
    directory: Path, stream: str, stream_id: str, secret: str, params: StreamParams
) -> Previous | None:
    """The latest sidecar of this stream (same name, id, secret and format), if any.
    Blocking: run it off the event loop. Looks only at files named after the stream."""
    pattern = f"{sanitize_stream_name(stream)}-*.json"
    digest = secret_digest(secret)
    found: list[tuple[str, Path, Sidecar]] = []
    for path in directory.glob(pattern):
        record = read_sidecar(path)
        if record is None:
            continue
        same = (
            record.stream == stream
            and record.stream_id == stream_id
            and hmac.compare_digest(record.resume_secret_sha256, digest)
            and record.matches(params.codec, params.rate_hz, params.channels)
        )
        if same:
            found.append((record.received_utc or "", path, record))
    if not found:
        return None
    _, path, record = max(found, key=lambda item: (item[0], item[1].name))
    position = _part_end(directory, record.parts[-1])
    record.interrupted()
    sizes = {}
    for name in [*record.files, path.name]:
        if "/" not in name:
            with contextlib.suppress(OSError):
                sizes[name] = (directory / name).stat().st_size
    return Previous(path, record, position, sizes)


def repair_interrupted(directory: Path, owned: Callable[[str], bool] | None = None) -> list[Path]:
    """After a crash: bring sidecars that still say "recording" up to date with their
    files, and say the part was interrupted. Run before the receiver takes any connection
    (nothing else writes them then); with ``--workers``, each worker repairs the streams it
    ``owned``. Blocking: run it off the event loop. Returns the sidecars it repaired."""
    repaired = []
    for path in directory.glob("*.json"):
        record = read_sidecar(path)
        if record is None or record.outcome != RECORDING:
            continue
        if owned is not None and not owned(record.stream):
            continue
        _part_end(directory, record.parts[-1])
        record.interrupted()
        try:
            write_sidecar(path, record)
        except StorageError:
            continue
        repaired.append(path)
    return repaired
