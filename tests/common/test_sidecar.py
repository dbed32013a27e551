"""The sidecar record: what a recording's sidecar says, read and written as typed values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from micwire.common.sidecar import Gap, Sidecar, SidecarPart

#: A sidecar as a receiver writes it: a stream continued after a receiver restart (two
#: parts, a gap in the second), with a field of a newer receiver's.
ON_DISK: dict[str, Any] = {
    "stream": "kit",
    "stream_id": "a" * 32,
    "start_utc": "2026-12-07T10:00:00+00:00",
    "received_utc": "2026-12-07T10:00:00.100000+00:00",
    "codec": "pcm",
    "peer": "127.0.0.1:50000",
    "resume_secret_sha256": "f" * 64,
    "clock_position": 0,
    "clock_utc": 1796637600.1,
    "rate_hz": 48000,
    "channels": 1,
    "frame_ms": 20.0,
    "software": "micwire/1.0",
    "receiver": "micwire/1.0",
    "from_the_future": {"x": [1, 2]},
    "files": ["kit-1.wav", "kit-2.wav"],
    "origin": 0,
    "samples": 96000 + 48000,
    "seconds": 3.0,
    "gaps": [{"at_sample": 100000, "samples": 960}],
    "outcome": "complete",
    "reconnects": 2,
    "parts": [
        {
            "files": ["kit-1.wav"],
            "origin": 0,
            "samples": 96000,
            "gaps": [],
            "outcome": "interrupted (the receiver stopped)",
        },
        {
            "files": ["kit-2.wav"],
            "origin": 96000,
            "samples": 48000,
            "gaps": [{"at_sample": 4000, "samples": 960}],
            "outcome": "complete",
        },
    ],
}


def test_a_sidecar_reads_and_writes_back_as_it_was() -> None:
    record = Sidecar.parse(json.loads(json.dumps(ON_DISK)))
    assert record is not None
    assert (record.stream, record.rate_hz, record.reconnects) == ("kit", 48000, 2)
    assert record.samples == 144000 and record.files == ["kit-1.wav", "kit-2.wav"]
    assert record.complete and record.clock == (0, 1796637600.1)
    assert record.parts[1].gaps == [Gap(4000, 960)] and record.parts[1].end == 144000
    assert record.matches("pcm", 48000, 1) and not record.matches("pcm", 44100, 1)
    assert record.to_json() == ON_DISK  # a newer receiver's field survives a rewrite


def test_the_totals_come_from_the_parts() -> None:
    """The stream's files, length and gaps (on its own timeline) are its parts' — a part
    that grew is seen in every total at once."""
    record = Sidecar.parse(ON_DISK)
    assert record is not None
    record.parts.append(SidecarPart(["kit-3.wav"], 200000, 4800, [Gap(0, 480)], "recording"))
    data = record.to_json()
    assert data["files"][-1] == "kit-3.wav" and data["samples"] == 148800
    assert data["seconds"] == 3.1
    assert data["gaps"] == [
        {"at_sample": 100000, "samples": 960},
        {"at_sample": 200000, "samples": 480},
    ]


def test_a_cut_off_recording_says_it_was_interrupted() -> None:
    record = Sidecar("kit", "id", "d", [SidecarPart(["k.wav"], 0, 10)], outcome="recording")
    assert not record.complete and record.clock is None
    record.interrupted()
    assert record.outcome == record.parts[0].outcome == "interrupted (the receiver stopped)"
    done = Sidecar("kit", "id", "d", [SidecarPart(["k.wav"], 0, 10, outcome="complete")])
    done.outcome = "complete"
    done.interrupted()  # an ended part keeps how it ended
    assert done.outcome == done.parts[0].outcome == "complete"


def test_an_old_sidecar_without_the_newer_fields_still_reads() -> None:
    """From before reconnections and the clock were kept; an outcome of null."""
    old = {k: v for k, v in ON_DISK.items() if k not in ("reconnects", "clock_utc", "peer")}
    old["outcome"] = None
    record = Sidecar.parse(old)
    assert record is not None
    assert record.reconnects == 0 and record.clock is None and record.peer is None
    assert "peer" not in record.to_json() and record.to_json()["outcome"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"stream": 5},
        {"stream_id": None},
        {"resume_secret_sha256": ["x"]},
        {"parts": []},
        {"parts": "kit-1.wav"},
        {"parts": [{"files": "kit-1.wav", "origin": 0, "samples": 1}]},
        {"parts": [{"files": [], "origin": "0", "samples": 1}]},
        {"parts": [{"files": [], "origin": 0, "samples": True}]},
        {"parts": [ON_DISK["parts"][0], None]},
    ],
)
def test_json_that_is_not_our_sidecar_is_none(change: dict[str, Any]) -> None:
    assert Sidecar.parse({**ON_DISK, **change}) is None


@pytest.mark.parametrize("other", [None, [], "text", 5, {"parts": [{}]}])
def test_other_json_is_none(other: Any) -> None:
    assert Sidecar.parse(other) is None


def test_odd_entries_inside_a_part_are_left_out_not_fatal() -> None:
    """A gap or a file name of the wrong kind (a hand edit) is dropped: the rest of the
    recording still resumes."""
    part = {"files": ["k.wav", 7], "origin": 0, "samples": 5, "gaps": [{"at_sample": "1"}, 3]}
    record = Sidecar.parse({**ON_DISK, "parts": [{**part, "outcome": 1}]})
    assert record is not None
    assert record.parts == [SidecarPart(["k.wav"], 0, 5, [], None)]


def test_a_sidecar_of_unknown_rate_has_no_seconds() -> None:
    record = Sidecar.parse({k: v for k, v in ON_DISK.items() if k != "rate_hz"})
    assert record is not None and record.to_json()["seconds"] is None


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_no_json_value_makes_reading_fail(value: Any) -> None:
    """Whatever a ``*.json`` in the record directory holds, reading it answers (None or a
    sidecar), never raises."""
    result = Sidecar.parse(value)
    assert result is None or isinstance(result, Sidecar)
