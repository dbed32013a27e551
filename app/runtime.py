"""How a micwire process runs: its event loop, the GIL's switch interval, SIGINT/SIGTERM,
the open-files limit and the exit status of an error. The ``micwire`` command and a
receiver's workers (:mod:`micwire.app.worker`) share it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

#: The exit status of a run that ended in an error (one line on stderr says which).
EXIT_ERROR = 1

# The PortAudio callback runs on the sound server's real-time thread but needs the GIL;
# while the event loop holds it, the callback waits up to the switch interval (5 ms by
# default: a whole period at low latency, and a late callback makes the sound server's
# cycle late for every client). Measured on JACK at 256 frames, 4 min each: 1 underrun
# and 8 device underflows at 5 ms, 0 and 3 at 0.5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


def run_until_signal(
    main: Callable[[asyncio.Event], Any], device: bool = True, receiver: bool = False
) -> Any:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop`` for a clean finish (exit 0).

    ``device``: a sound device's callback will need the GIL. Without one (a receiver that
    only records, a sender of a tone or file), Python's default switch interval stays:
    the short one makes the event loop and the file writers hand the GIL to each other
    ten times as often, for nothing (bench/capacity.py)."""
    if device:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    with asyncio.Runner(loop_factory=loop_factory(receiver)) as runner_:
        return runner_.run(runner())


def loop_factory(receiver: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """asyncio's own event loop, or uvloop's with ``MICWIRE_LOOP=uvloop`` (installed with
    micwire, except on Windows). uvloop halves a bare aiohttp server's cost per packet
    (10 paced streams: 4.2 % of a core on asyncio, 2.2 % on uvloop), but with it live
    playback on JACK glitched in 2 of 5 end-to-end runs (none on asyncio's loop): opt-in
    for receivers that only record, until that is understood. A receiver's asyncio loop
    can gather its wake-ups (micwire.receiver.eventloop, ``--gather-ms``)."""
    if os.environ.get("MICWIRE_LOOP", "asyncio") != "uvloop":
        if not receiver or sys.platform == "win32":  # Windows' asyncio: its proactor loop
            return None
        from ..receiver import eventloop

        return eventloop.new_event_loop
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def raise_open_files_limit() -> None:
    """A receiver holds a socket per connection and files per stream: raise the soft limit
    on open files to the hard one (commonly 1024 of 1048576)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
