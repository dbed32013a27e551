"""The receiver measures each sender's wall clock against its own (pings answered by pongs,
common/clock.py): a sender whose clock is seconds off (libfaketime: the real program, its
clock moved) is found that far off, within the bound the measurement states."""

from __future__ import annotations

import glob
import json
import signal
from pathlib import Path

import pytest
from rig import Micwire, receiver, seconds


def moved_clock(offset_s: float) -> dict[str, str]:
    """The environment that moves a program's wall clock by ``offset_s`` (libfaketime, from
    the Debian package faketime), leaving its monotonic clock alone."""
    (library,) = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return {
        "LD_PRELOAD": library,
        "FAKETIME": f"{offset_s:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@pytest.mark.parametrize("offset_s", [0.0, 3.7, -2.5])
def test_the_receiver_finds_how_far_off_the_senders_clock_is(
    tmp_path: Path, offset_s: float
) -> None:
    rec, stats = tmp_path / "rec", tmp_path / "stats.jsonl"
    rx, port = receiver("--no-play", "--record", str(rec), "--stats-json", str(stats))
    try:
        tx = Micwire(
            "send", f"ws://127.0.0.1:{port}", "--name", "kit", "--source", "tone:440",
            "--duration", "5", env=moved_clock(offset_s) if offset_s else None,
        )  # fmt: skip
        assert tx.wait(seconds(30)) == 0, tx.log
        rx.wait_for(r"stream 'kit' from .*: complete")
    finally:
        rx.signal(signal.SIGINT)
        rx.wait(seconds(20))
    (sidecar_path,) = rec.glob("kit-*.json")
    clock = json.loads(sidecar_path.read_text())["sender_clock"]
    assert clock["exchanges"] >= 2, clock
    # within what the measurement says it can be wrong by (half the fastest round trip);
    # on one machine that bound is what a record-only receiver adds to a pong's round
    # trip: it reads its sockets every --gather-ms 100 (the fastest of a few pings then
    # waited well under 100 ms; the more exchanges, the smaller the bound)
    assert abs(clock["offset_ms"] - offset_s * 1000) <= clock["bound_ms"] + 0.5, clock
    assert clock["bound_ms"] < 100, clock
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    measured = [x["sender_clock_offset_ms"] for x in lines if x["sender_clock_offset_ms"]]
    assert measured and abs(measured[-1] - offset_s * 1000) < 100, lines[-1]
