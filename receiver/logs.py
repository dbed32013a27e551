"""Log lines that an attacker cannot multiply: the same kind of message at most a few
times in a while, then one line saying how many were left out."""

from __future__ import annotations

import logging
import time


class RepeatFilter(logging.Filter):
    """Lets at most ``burst`` records with the same message template (``record.msg``,
    before arguments are filled in) through per ``period_s``; the next one that passes
    after a quiet spell says how many were suppressed."""

    def __init__(self, burst: int = 5, period_s: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.period_s = period_s
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
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
        if len(self._seen) > 1000:  # bounded: forget the oldest kinds
            for old in list(self._seen)[:500]:
                del self._seen[old]
        return True


def install(*names: str) -> None:
    """Put one RepeatFilter on each named logger (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())
