"""Sidecars: found again after a restart by the stream's own sender only; anything else in
the record directory is left alone; a full disk never leaves half a sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from micwire.common.errors import StorageError
from micwire.common.protocol import StreamParams
from micwire.receiver.storage import find_previous, secret_digest, write_json

PARAMS = StreamParams("pcm", 48000, 1, 20.0)


def sidecar(directory: Path, name: str = "mic", **changes: object) -> Path:
    data: dict[str, object] = {
        "stream": "mic",
        "stream_id": "abc",
        "resume_secret_sha256": secret_digest("s3cret"),
        "codec": "pcm",
        "rate_hz": 48000,
        "channels": 1,
        "received_utc": "2026-12-03T10:00:00+00:00",
        "parts": [{"files": [], "origin": 0, "samples": 4800, "gaps": [], "outcome": "recording"}],
    }
    data.update(changes)
    path = directory / f"{name}-20261203T100000Z.json"
    path.write_text(json.dumps(data))
    return path


def test_the_streams_own_sender_finds_its_recording(tmp_path: Path) -> None:
    path = sidecar(tmp_path)
    found = find_previous(tmp_path, "mic", "abc", "s3cret", PARAMS)
    assert found is not None and found.path == path and found.position == 4800
    # the part it left unfinished says so, instead of "recording"
    assert found.record.parts[0].outcome == "interrupted (the receiver stopped)"


@pytest.mark.parametrize(
    ("stream", "stream_id", "secret", "params"),
    [
        ("mic", "abc", "guessed", PARAMS),  # someone with the id from the sidecar
        ("mic", "other", "s3cret", PARAMS),
        ("Mic", "abc", "s3cret", PARAMS),  # names are identities, exactly as sent
        ("mic", "abc", "s3cret", StreamParams("pcm", 44100, 1, 20.0)),
    ],
)
def test_nobody_else_continues_it(
    tmp_path: Path, stream: str, stream_id: str, secret: str, params: StreamParams
) -> None:
    sidecar(tmp_path)
    assert find_previous(tmp_path, stream, stream_id, secret, params) is None


@pytest.mark.parametrize(
    "foreign", ["[]", "{}", "null", '"text"', "{not json", '{"stream": 5}', "\udcff"]
)
def test_a_foreign_json_file_is_skipped_and_left_alone(tmp_path: Path, foreign: str) -> None:
    """Any *.json that is not one of our sidecars (even one named like a stream's) is
    neither read as one nor written."""
    other = tmp_path / "mic-notes.json"
    other.write_text(foreign, errors="surrogateescape")
    before = other.read_bytes()
    sidecar(tmp_path)
    found = find_previous(tmp_path, "mic", "abc", "s3cret", PARAMS)
    assert found is not None and found.position == 4800
    assert other.read_bytes() == before


def test_a_sidecar_with_wrong_field_types_is_not_ours(tmp_path: Path) -> None:
    sidecar(tmp_path, parts=[{"files": "x.wav", "origin": "0", "samples": 1}])
    assert find_previous(tmp_path, "mic", "abc", "s3cret", PARAMS) is None


def test_write_json_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    write_json(path, {"n": 1})
    write_json(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_json_failure_says_why_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "a.json"  # the directory was deleted under the receiver
    with pytest.raises(StorageError, match=r"No such file or directory \(writing a.json\)"):
        write_json(path, {"n": 1})


def test_a_crash_left_sidecar_is_brought_up_to_date(tmp_path: Path) -> None:
    """A sidecar written a second before a SIGKILL lags its WAV (whose header is kept
    current): the next receiver brings it up to date and says the part was interrupted."""
    import numpy as np
    import soundfile as sf

    from micwire.receiver.storage import repair_interrupted

    wav = tmp_path / "mic-20261203T100000Z.wav"
    sf.write(str(wav), np.ones(9600, np.int16), 48000)
    path = sidecar(
        tmp_path,
        outcome="recording",
        parts=[
            {"files": [wav.name], "origin": 0, "samples": 4800, "gaps": [], "outcome": "recording"}
        ],
    )
    other = sidecar(tmp_path, name="other", stream="other", outcome="recording")  # not ours
    assert repair_interrupted(tmp_path, owned=lambda name: name != "other") == [path]
    data = json.loads(path.read_text())
    assert data["outcome"] == data["parts"][0]["outcome"] == "interrupted (the receiver stopped)"
    assert data["samples"] == data["parts"][0]["samples"] == 9600
    assert json.loads(other.read_text())["outcome"] == "recording"


def test_unique_names_never_run_out(tmp_path: Path) -> None:
    from micwire.receiver.writers import create_unique as _create_unique

    made = {_create_unique(tmp_path, "x-1.wav").name for _ in range(150)}
    assert len(made) == 150 and "x-1.wav" in made and "x-1-99.wav" in made
