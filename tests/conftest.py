"""Settings every test shares."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Senders keep each stream's resume state under ``$XDG_STATE_HOME/micwire`` until the
    receiver confirms it (sender/state.py): the tests' senders, in-process and in
    subprocesses, keep theirs in a directory of the test session's own, not in the home
    of whoever runs the tests. (A test about that state gives each sender its own.)"""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before
