"""The guest page's connection protocol (receiver/web/send-core.js), in Chromium, against
the same table of cases as the command-line sender's (tests/cases/sender_connection.json):
one state machine, two languages."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from browser import browser_page
from rig import receiver
from sender_connection import JS_RUNNER, check, load

CASES = load()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One receiver and one guest page for every case (the page serves send-core.js)."""
    rec = tmp_path_factory.mktemp("rec")
    rx, port = receiver("--no-play", "--record", str(rec), "--format", "wav")
    try:
        with browser_page(f"http://127.0.0.1:{port}") as guest_page:
            guest_page.goto("/send?name=cases")
            yield guest_page
    finally:
        rx.signal(signal.SIGINT)
        rx.wait()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_table_of_cases_in_the_browser(page: Any, case: dict[str, Any]) -> None:
    check(case, page.evaluate(JS_RUNNER.read_text(encoding="utf-8"), case))
