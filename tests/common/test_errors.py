"""The words a failed write is reported in: one rule for every writer (MP3, WAV, sidecars)."""

from __future__ import annotations

import errno
import os

import pytest

from micwire.common.errors import write_failure


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EFBIG, "file too large for this file system"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EROFS, os.strerror(errno.EROFS)),
    ],
)
def test_each_cause_people_can_fix_is_named(code: int, says: str) -> None:
    assert write_failure(OSError(code, os.strerror(code), "/rec/kit.wav")) == says


def test_what_the_caller_found_out_wins_over_a_vague_error() -> None:
    vague = RuntimeError("Error opening 'kit.flac': System error.")
    assert write_failure(vague) == "Error opening 'kit.flac': System error."
    assert write_failure(vague, errno.ENOSPC) == "no space left on device"
    assert write_failure(RuntimeError("No space left on device")) == "no space left on device"
    assert write_failure(RuntimeError()) == "RuntimeError"
