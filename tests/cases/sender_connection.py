"""The table of cases for the sender's connection protocol (``sender_connection.json``).

Each case is a list of events, at given times, and what each must lead to: the actions
(``["connect"]``, ``["wait", seconds]``, ``["close"]``, ``["abort"]``,
``["notice", kind]``, ``["finish", state]``), the packets sent (``[timestamp, samples,
flags]``), the state, the report's figures. One table, two runners that report what they
saw in the same shape: the Python class (tests/common/test_connection_sender.py) and the
guest page's mirror, send-core.js, in Chromium (tests/web/test_sender_cases.py, whose
runner is ``run_sender_case.js`` here).

After every event a runner asks the protocol for what to send until it has nothing (a
link that takes everything), unless the case made the link full (``{"event": "link",
"full": true}``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("sender_connection.json")
#: The JavaScript runner, evaluated in the guest page with a case: returns what it saw.
JS_RUNNER = Path(__file__).with_name("run_sender_case.js")
#: Wall clock of ``at`` 0 (s since the epoch): capture times and hellos are stamped from it.
WALL_ZERO = 1_700_000_000.0


def load() -> list[dict[str, Any]]:
    """The cases, each with its whole configuration (the table's defaults, then its own)."""
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    return [
        {**case, "config": {**table["defaults"], **case.get("config", {})}}
        for case in table["cases"]
    ]


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return (
            isinstance(got, (int, float))
            and isinstance(want, (int, float))
            and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_same(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, dict):  # the figures a case names; the others are not its point
        return isinstance(got, dict) and all(
            key in got and _same(got[key], value) for key, value in want.items()
        )
    return bool(got == want)


def check(case: dict[str, Any], observed: list[dict[str, Any]]) -> None:
    """What a runner saw, step by step, against what the case expects."""
    steps = case["steps"]
    assert len(observed) == len(steps), (len(observed), len(steps))
    for number, (step, seen) in enumerate(zip(steps, observed, strict=True), 1):
        for key, want in step.get("expect", {}).items():
            got = seen.get(key)
            assert _same(got, want), (
                f"{case['name']}: step {number} ({step['event']} at {step['at']} s): "
                f"{key} is {json.dumps(got)}, expected {json.dumps(want)}"
            )
