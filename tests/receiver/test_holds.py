"""Whose a stream name is, as a refused sender is told."""

from __future__ import annotations

import calendar
import json
import os
import time
from pathlib import Path

from micwire.common.outcome import SENDER_RESTARTED, Outcome
from micwire.receiver.holds import Holder, name_reserved
from micwire.receiver.storage import secret_digest

NOON = float(calendar.timegm((2026, 12, 3, 12, 0, 0)))


def test_a_live_name_says_who_and_since_when() -> None:
    holder = Holder("10.0.0.7:50312", since=NOON - 90)
    assert holder.reason("kit", NOON) == (
        "stream name 'kit' is in use by another sender (10.0.0.7:50312, since 11:58:30 UTC); "
        "pick another name, or retry when it ends"
    )
    assert holder.retry_after_s(NOON) is None  # nobody knows when it ends


def test_a_held_name_says_whose_and_until_when() -> None:
    holder = Holder("10.0.0.7:50312", until=NOON + 47.5)
    assert holder.reason("kit", NOON) == (
        "stream name 'kit' is in use: held for its sender at 10.0.0.7:50312, which may come "
        "back to continue it, until 12:00:47 UTC (48 s); pick another name, or retry then"
    )
    assert holder.retry_after_s(NOON) == 47.5
    assert holder.retry_after_s(NOON + 60) == 0.0


def test_a_stream_its_restarted_sender_ended_holds_its_name_no_longer() -> None:
    assert not Outcome.parse(SENDER_RESTARTED).resumable
    assert Outcome.parse("connection lost (no close frame)").resumable


def test_after_a_restart_the_sidecar_says_whose_the_name_is(tmp_path: Path) -> None:
    def sidecar(name: str, outcome: str, age_s: float) -> None:
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "stream": "kit",
                    "stream_id": "abc",
                    "resume_secret_sha256": secret_digest("s"),
                    "peer": "10.0.0.7:50312",
                    "outcome": outcome,
                    "parts": [{"files": [], "origin": 0, "samples": 1, "outcome": outcome}],
                }
            )
        )
        os.utime(path, (time.time() - age_s, time.time() - age_s))

    started = time.time() - 100  # the receiver started 100 s ago
    sidecar("kit-1", "interrupted (the receiver stopped)", age_s=200)
    assert name_reserved(tmp_path, "kit", started, 60) is None  # long over
    sidecar("kit-2", SENDER_RESTARTED, age_s=10)
    assert name_reserved(tmp_path, "kit", started, 60) is None  # ended for good
    sidecar("kit-3", "connection lost (no close frame)", age_s=10)
    holder = name_reserved(tmp_path, "kit", started, 60)
    assert holder is not None and holder.peer == "10.0.0.7:50312"
    assert holder.until is not None and abs(holder.until - (time.time() + 50)) < 5
    assert name_reserved(tmp_path, "kat", started, 60) is None
