"""Log lines that an attacker cannot multiply, nor use to hide others.

The same kind of message (its template, before arguments are filled in) from the same
peer passes at most ``burst`` times per ``period_s``; then one line says how many were
left out. The peer is a context variable the receiver sets for each connection's task
(and every task it starts), so a flood from one address never silences the lines of a
stream from another.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

#: The address whose connection the current task serves ("" elsewhere).
PEER: ContextVar[str] = ContextVar("micwire_peer", default="")


class RepeatFilter(logging.Filter):
    def __init__(self, burst: int = 5, period_s: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.period_s = period_s
        # (logger, template, peer) -> (window start, passed, suppressed)
        self._seen: dict[tuple[str, str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg), PEER.get())
        now = time.monotonic()
        start, passed, suppressed = self._seen.get(key, (now, 0, 0))
        if now - start > self.period_s:
            start, passed = now, 0
        if passed >= self.burst:
            self._seen[key] = (start, passed, suppressed + 1)
            return False
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like this, not shown)"
        self._seen[key] = (start, passed + 1, 0)
        if len(self._seen) > 5000:  # bounded: forget the oldest kinds
            for old in list(self._seen)[:2500]:
                del self._seen[old]
        return True

    def left_out(self) -> list[tuple[str, str, int]]:
        """(template, peer, count) of lines suppressed and not yet reported."""
        return [(msg, peer, n) for (_, msg, peer), (_, _, n) in self._seen.items() if n]


def install(*names: str) -> None:
    """Put one RepeatFilter on each named logger (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


def report_left_out(*names: str) -> None:
    """At the end: say how many lines of each kind were not shown."""
    log = logging.getLogger("micwire.receiver")
    for name in names:
        for f in logging.getLogger(name).filters:
            if isinstance(f, RepeatFilter):
                for msg, peer, count in f.left_out():
                    log.info(
                        "%d more log lines like %r%s were not shown",
                        count,
                        msg,
                        f" from {peer}" if peer else "",
                    )
