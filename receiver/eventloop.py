"""The receiver's event loop: asyncio's, on a selector that can gather wake-ups.

On a small machine (and far more on a VM) waking up costs more than the work a packet
brings: an asyncio loop that only sleeps 20 ms at a time costs 1.6 % of a core here, a
20 ms PCM packet's own work about a tenth of that. A receiver that only records does not
need to look at its sockets the moment a packet lands: with ``interval_s`` set, the loop
waits until that long after its last wake-up before it looks again (the packets wait in
the kernel's socket buffers meanwhile), then handles everything that arrived in one go.
One stream at 100 ms costs 1.2 % of a core instead of 2.8 %; 40 streams 0.40 % a stream
instead of 0.63 % (bench/capacity.py, README "Measured").

It delays everything by up to ``interval_s``: the receiver sets it only while nothing
live is served (no live playback, no monitor page, no listener), and turns it off on the
next tick (0.2 s) when one comes. What waits in the meantime: acknowledgements (the
sender's spool holds the audio until then), a new connection's answer, /metrics and
/healthz answers. Ready callbacks (timeout 0) never wait.
"""

from __future__ import annotations

import asyncio
import selectors
import time
import weakref
from typing import Any


class GatheringSelector(selectors.DefaultSelector):
    """The platform's selector, looking at most once per ``interval_s`` (0: at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.interval_s = 0.0
        self._last = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        if self.interval_s > 0 and (timeout is None or timeout > 0):
            wait = self._last + self.interval_s - time.monotonic()
            if wait > 0:
                if timeout is not None:  # a timer due sooner is not made late
                    wait = min(wait, timeout)
                    timeout -= wait
                time.sleep(wait)
        ready: list[Any] = super().select(timeout)
        self._last = time.monotonic()
        return ready


_SELECTORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GatheringSelector] = (
    weakref.WeakKeyDictionary()
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """asyncio's selector event loop on a :class:`GatheringSelector` (interval 0 at first)."""
    selector = GatheringSelector()
    loop = asyncio.SelectorEventLoop(selector)
    _SELECTORS[loop] = selector
    return loop


def gather_wakeups(interval_s: float) -> None:
    """Let the running loop look at its sockets at most every ``interval_s`` (0: at once).
    Does nothing on another loop (uvloop, a test's own loop)."""
    selector = _SELECTORS.get(asyncio.get_running_loop())
    if selector is not None:
        selector.interval_s = max(0.0, interval_s)
