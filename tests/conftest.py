"""Settings and fixtures every test shares; the functions behind them are in
tests/integration/rig.py (a test module imports rig, never another test module).

- Senders keep their resume state in a directory of the test session's own.
- ``jack``: a JACK dummy server (a paced sound card) for a test module, named uniquely.
- ``free_port``: a TCP port on 127.0.0.1 nothing listens on.
- Every ``micwire`` subprocess a test started is gone when the test is (rig.Micwire).
- ``make test`` runs the suite on parallel workers (pytest-xdist, ``--dist loadgroup``):
  tests that need a quiet machine (real-time playback through JACK: what is heard, the
  jitter buffer, drift) carry ``@pytest.mark.quiet`` and run one after another in one
  worker, started first; the slowest modules start next, the quick ones fill in.
- Under ``make test`` (MICWIRE_TEST_STRICT=1) a skipped test fails: the suite a user runs
  must not pass with part of it left out (a tmpfs that could not be mounted without root).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rig import free_port as _free_port
from rig import jack_server, stop_leftover_processes

#: Test modules that take longest, in the order they should start (the quiet group goes
#: before them all); the rest follow in collection order. Figures from
#: ``pytest --durations`` on a 2-core machine.
SLOW_FIRST = (
    "tests/integration/test_workers.py",
    "tests/web/test_guest_page.py",
    "tests/receiver/test_recording.py",  # a 4 GiB WAV: 12 s
    "tests/integration/test_hardening.py",
    "tests/web/test_api.py",
    "tests/integration/test_restart.py",
    "tests/web/test_monitor_page.py",
    "tests/integration/test_devices.py",
    "tests/integration/test_crash.py",
    "tests/integration/test_transport.py",
    "tests/integration/test_cli.py",
)
STRICT = os.environ.get("MICWIRE_TEST_STRICT", "") not in ("", "0")
PARALLEL = "PYTEST_XDIST_WORKER" in os.environ  # this process is a pytest-xdist worker
_lowered = False
QUIET_WAIT_S = 900  # the quiet tests take about three minutes


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


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """A ``micwire`` subprocess the test left running (it failed before stopping it) is
    killed, so it cannot load the machine or hold a port for the tests after it."""
    yield
    stop_leftover_processes()


@pytest.fixture(autouse=True)
def quiet_tests_first_in_line(request: pytest.FixtureRequest) -> Iterator[None]:
    """On parallel workers the quiet tests get the machine nearly to themselves:

    - While they run (the quiet phase), the other workers wait: the quiet tests run alone.
      Measured with all four workers free: the drift test underran 4-7 times
      in its minute (3 allowed; 0-1 when run alone), the sender's input overflowed in the
      PCM and Opus end-to-end tests, the proxy and a sender stalled for 35-95 ms in the
      jitter-buffer test.
    - Everything but the quiet tests runs at the lowest CPU priority there is, SCHED_IDLE
      (inherited by the processes it starts). Nice 19 is not enough: Chromium, started as
      root, raises its browser and GPU processes to nice -8; a SCHED_IDLE process's nice
      value does not count. (Alone, this still left the drift test 4-6 underruns; and with
      one other worker at SCHED_IDLE beside them, the page's player still underran after
      its catch-up in 2 runs of 2, and at its start in 1 of 3 beside two idle-class busy
      loops: on this VM an idle-class neighbour still slows a real-time audio thread.)

    The quiet worker runs its quiet tests before anything else (one xdist group, started
    first): at its first other test the quiet phase is over."""
    if not PARALLEL or _QUIET is None:
        yield
        return
    if request.node.get_closest_marker("quiet") is not None:
        yield
        return
    _lower_priority_once()
    with _QUIET.turn():
        yield


class QuietPhase:
    """Files shared by the workers of one test run (PYTEST_XDIST_TESTRUNUID)."""

    def __init__(self, run: str) -> None:
        folder = Path(tempfile.gettempdir()) / f"micwire-tests-{run}"
        folder.mkdir(exist_ok=True)
        self.done = folder / "quiet-done"  # exists once the quiet tests have all run

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait until the quiet tests have all run (at most QUIET_WAIT_S: a quiet worker
        that died must not hold the rest of the suite for ever)."""
        deadline = time.monotonic() + QUIET_WAIT_S
        while not self.done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield


def _lower_priority_once() -> None:
    global _lowered
    if not _lowered:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):  # not Linux
            os.nice(19)
        _lowered = True


#: Set when this run has quiet tests selected (tests/conftest.py's GroupNames sees them).
_QUIET: QuietPhase | None = None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last quiet test, the quiet phase is over."""
    last = nextitem is None or nextitem.get_closest_marker("quiet") is None
    if _QUIET is not None and item.get_closest_marker("quiet") is not None and last:
        _QUIET.done.touch()


@pytest.fixture(scope="module")
def jack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JACK dummy server for the module's tests; its name (``JACK_DEFAULT_SERVER``)."""
    with jack_server(tmp_path_factory.mktemp("jack")) as name:
        yield name


@pytest.fixture
def free_port() -> int:
    return _free_port()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(GroupNames(), "micwire-xdist-group-names")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Quiet tests into one xdist group; the longest work first, so that no worker is
    left with a minute-long test when the others have finished (tryfirst: xdist names
    the groups in its own hook, after this one)."""
    for item in items:
        if item.get_closest_marker("quiet") is not None:
            item.add_marker(pytest.mark.xdist_group("quiet"))

    def rank(item: pytest.Item) -> tuple[int, int]:
        quiet = item.get_closest_marker("quiet")
        if quiet is not None:  # first=True: the longest of them, started at once
            return (0, 0 if quiet.kwargs.get("first") else 1)
        path = item.nodeid.split("::", 1)[0]
        if path in SLOW_FIRST:
            return (1, SLOW_FIRST.index(path))
        return (2, 0)

    items.sort(key=rank)  # stable: collection order within each rank


class GroupNames:
    """``--dist loadgroup`` keeps a group on one worker by the ``@GROUP`` that xdist puts
    at the end of each member's node id, through ``item._nodeid``; pytest 9.2 keeps the id
    elsewhere (``item._id``), so xdist 3.8's suffix goes nowhere and every quiet test
    lands on any worker. Put it where this pytest reads it, and fail loudly rather than
    run the quiet tests side by side if that no longer works."""

    @pytest.hookimpl(trylast=True)  # after xdist's own
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        global _QUIET
        if PARALLEL and config.getoption("loadgroup", default=False):
            for item in items:
                _name_group(item)
        quiet = [item for item in items if item.get_closest_marker("quiet") is not None]
        if PARALLEL and quiet:  # (after -k and -m: what this run will really run)
            _QUIET = QuietPhase(os.environ.get("PYTEST_XDIST_TESTRUNUID", "serial"))


def _name_group(item: pytest.Item) -> None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None or item.nodeid.endswith(f"@{mark.args[0]}"):
        return
    grouped = f"{item.nodeid}@{mark.args[0]}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(grouped)
    else:
        item._nodeid = grouped
    if item.nodeid != grouped:
        raise pytest.UsageError(f"cannot put {item.nodeid} in its xdist group")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under MICWIRE_TEST_STRICT=1 (``make test``) a skip is a failure, with its reason."""
    report = yield
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            "skipped under make test (MICWIRE_TEST_STRICT=1), which must run every test; "
            f"make test STRICT=0 lets it skip: {reason}"
        )
    return report
