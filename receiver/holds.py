"""Who has a stream name, said in a refusal a person can act on (pure).

A name is in use while its stream is live, and held for its sender for a grace period
after its connection broke (docs/PROTOCOL.md §5, §7). A refused sender's user wants to
know whose the name is and when it frees: "stream name 'kit' is in use: held for its
sender at 10.0.0.7:50312, which may come back to continue it, until 17:42:10 UTC (48 s);
pick another name, or retry then". A held name's refusal also says when to retry
(``retry_after_s``), so senders wait instead of asking every two seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


def utc_clock(unix_s: float) -> str:
    """``17:42:10 UTC``."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix_s))


@dataclass(frozen=True)
class Holder:
    """Whose a stream name is: a live stream's sender (``since`` when), or a sender that
    may come back to continue its stream (``until`` when the name frees otherwise)."""

    peer: str
    since: float | None = None  # Unix seconds
    until: float | None = None  # Unix seconds; None: while the stream is live

    def reason(self, name: str, now: float) -> str:
        if self.until is None:
            since = f", since {utc_clock(self.since)}" if self.since is not None else ""
            return (
                f"stream name {name!r} is in use by another sender ({self.peer}{since}); "
                "pick another name, or retry when it ends"
            )
        left = math.ceil(max(0.0, self.until - now))
        return (
            f"stream name {name!r} is in use: held for its sender at {self.peer}, which may "
            f"come back to continue it, until {utc_clock(self.until)} ({left} s); pick "
            "another name, or retry then"
        )

    def retry_after_s(self, now: float) -> float | None:
        """When the name frees, unless its sender comes back first (None: unknown)."""
        return None if self.until is None else max(0.0, self.until - now)
