"""A sender's resume state on disk: one process owns a stream's entry at a time, the
entry is a secret (0600), and it outlives a process that did not finish its stream."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from micwire.common.paths import state_home
from micwire.common.protocol import StreamParams
from micwire.common.resume import ResumeEntry, receiver_key
from micwire.sender.config import SenderConfig
from micwire.sender.state import StreamState

RECEIVER = receiver_key("ws://127.0.0.1:8765")
ENTRY = ResumeEntry(RECEIVER, "kit", "abc", "s3cret", StreamParams(), 1_795_000_000_000_000)


def test_the_state_directory_is_micwires(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert SenderConfig("ws://x:1").state_dir == state_home() == tmp_path / "micwire"
    state = StreamState(state_home(), RECEIVER, "kit")
    assert state.path.parent == tmp_path / "micwire" / "resume"  # the receiver has its own


def test_an_entry_is_a_secret_kept_until_forgotten(tmp_path: Path) -> None:
    first = StreamState(tmp_path / "micwire", RECEIVER, "kit")
    assert first.claim() and first.earlier() is None
    first.save(ENTRY)
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "micwire").stat().st_mode) == 0o700
    assert [p.name for p in first.directory.iterdir() if p.name.endswith(".tmp")] == []
    first.release()  # the process ends before the receiver confirmed the stream

    second = StreamState(tmp_path / "micwire", RECEIVER, "kit")
    assert second.claim() and second.earlier() == ENTRY
    second.forget()
    second.release()
    assert list(first.directory.iterdir()) == []  # no entry, no lock file left


def test_one_process_owns_an_entry_at_a_time(tmp_path: Path) -> None:
    """flock locks belong to an open file: two StreamStates conflict as two processes do."""
    first = StreamState(tmp_path, RECEIVER, "kit")
    assert first.claim()
    first.save(ENTRY)
    second = StreamState(tmp_path, RECEIVER, "kit")
    assert not second.claim() and second.earlier() is None
    second.save(ENTRY)  # not its to write: nothing happens
    second.forget()  # nor to remove
    assert first.path.exists()
    code = (
        "import sys; from pathlib import Path; from micwire.sender.state import StreamState; "
        f"print(StreamState(Path(sys.argv[1]), {RECEIVER!r}, 'kit').claim())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == "False"
    first.release()
    assert second.claim() and second.earlier() == ENTRY  # free once the first has ended
    second.release()


def test_another_name_or_receiver_is_another_entry(tmp_path: Path) -> None:
    states = [
        StreamState(tmp_path, RECEIVER, "kit"),
        StreamState(tmp_path, RECEIVER, "kit2"),
        StreamState(tmp_path, receiver_key("ws://127.0.0.1:8766"), "kit"),
    ]
    assert all(state.claim() for state in states)
    for state in states:
        state.release()


def test_a_state_directory_that_cannot_be_written_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    state = StreamState(blocker / "micwire", RECEIVER, "kit")
    with caplog.at_level(logging.WARNING, "micwire.sender"):
        assert not state.claim()
        state.save(ENTRY)
        state.save(ENTRY)
    (record,) = caplog.records
    assert "cannot keep this stream's resume state" in record.getMessage()
