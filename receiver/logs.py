"""Log lines that an attacker cannot multiply, nor use to hide others.

The same kind of message (its template, before arguments are filled in) from the same
peer passes at most ``burst`` times per ``period_s``; then one line says how many were
left out. The peer is a context variable the receiver sets for each connection's task
(and every task it starts), so a flood from one address never silences the lines of a
stream from another.

Many streams can share one address (senders behind a NAT, several on one machine, every
sender behind a load balancer): once a connection is admitted to a stream, its lines
count against that stream (its name and its sender's id: a sender that takes the name
after another has its own), so each stream's start and end are shown; all the streams of
one address together still pass at most ``wide_burst`` lines of a kind per period (the
receiver sets it to --max-streams: as many as can be live at once).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar

#: The address whose connection the current task serves ("" elsewhere).
PEER: ContextVar[str] = ContextVar("micwire_peer", default="")
#: The stream the current task's connection was admitted to ("" before, or elsewhere).
STREAM: ContextVar[str] = ContextVar("micwire_stream", default="")


@contextlib.contextmanager
def about(peer: str, stream: str) -> Iterator[None]:
    """Count the lines logged inside against ``stream`` from ``peer`` (its "host:port" or
    host): for lines a stream's own connection does not log (the once-a-second alerts)."""
    host, _, port = peer.rpartition(":")
    tokens = PEER.set(host if host and port.isdigit() else peer), STREAM.set(stream)
    try:
        yield
    finally:
        STREAM.reset(tokens[1])
        PEER.reset(tokens[0])


#: (logger, template, peer, stream): stream is "" before admission, ALL for the total of
#: the address's admitted streams, KINDS for the total over the kinds of one template.
_Key = tuple[str, str, str, str]
ALL = "\0all"
KINDS = "\0kinds"
#: Between a template and its kind in a key (a record's ``limit_kind``, e.g. why a
#: connection was refused: each reason gets its own lines, not one count for all).
_KIND = "\0"


class RepeatFilter(logging.Filter):
    def __init__(
        self,
        burst: int = 5,
        period_s: float = 10.0,
        wide_burst: int = 100,
        max_kinds: int = 5000,
        kinds_burst: int = 20,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.wide_burst = wide_burst
        #: Lines of one template from one address over all its kinds (the kinds are the
        #: sender's to choose: a flood of different reasons is still bounded).
        self.kinds_burst = kinds_burst
        self.period_s = period_s
        self.max_kinds = max_kinds
        # key -> (window start, passed, suppressed)
        self._seen: dict[_Key, tuple[float, int, int]] = {}
        #: Lines left out whose kind was forgotten before they were reported.
        self.forgotten = 0

    def filter(self, record: logging.LogRecord) -> bool:
        # a worker's line shown by its supervisor carries its template (the message is
        # already formatted); the template goes with the record for the next filter
        template = getattr(record, "template", None) or str(record.msg)
        record.template = template
        peer, stream = PEER.get(), STREAM.get()
        kind = getattr(record, "limit_kind", None)
        own = template if kind is None else f"{template}{_KIND}{kind}"
        limits: list[tuple[_Key, int]] = [((record.name, own, peer, stream), self.burst)]
        if stream:  # the stream's own limit, then its address's total
            limits.append(((record.name, own, peer, ALL), self.wide_burst))
        if kind is not None:  # each kind its own lines, within a total for the template
            limits.append(((record.name, template, peer, KINDS), self.kinds_burst))
        now = time.monotonic()
        windows = []
        for key, _ in limits:
            start, passed, suppressed = self._seen.get(key, (now, 0, 0))
            if now - start > self.period_s:
                start, passed = now, 0
            windows.append((start, passed, suppressed))
        for (key, burst), (start, passed, suppressed) in zip(limits, windows, strict=True):
            if passed >= burst:
                if key[3] == KINDS:  # counted against its own kind, to be said as such
                    key, (start, passed, suppressed) = limits[0][0], windows[0]
                self._seen[key] = (start, passed, suppressed + 1)
                return False
        left_out = sum(suppressed for _, _, suppressed in windows)
        if left_out:
            record.msg = f"{record.msg} (and {left_out} more like this, not shown)"
        for (key, _), (start, passed, _) in zip(limits, windows, strict=True):
            self._seen[key] = (start, passed + 1, 0)
        if len(self._seen) > self.max_kinds:  # bounded: forget the oldest half of the kinds
            for old in list(self._seen)[: self.max_kinds // 2]:
                self.forgotten += self._seen.pop(old)[2]  # still counted, if not by kind
        return True

    def reset(self) -> None:
        """Forget every count (lines left out and not yet reported are dropped from the
        report: the receiver that would have reported them is gone)."""
        self._seen.clear()
        self.forgotten = 0

    def left_out(self) -> list[tuple[str, str, int]]:
        """(template, peer, count) of lines suppressed and not yet reported, per address."""
        totals: dict[tuple[str, str], int] = {}
        for (_, msg, peer, stream), (_, _, n) in self._seen.items():
            if n and stream != KINDS:  # (the kinds' total: counted in each kind's own)
                template, _, kind = msg.partition(_KIND)
                said = f"{template} ({kind})" if kind else template
                totals[(said, peer)] = totals.get((said, peer), 0) + n
        out = [(msg, peer, n) for (msg, peer), n in totals.items()]
        if self.forgotten:
            out.append(("(of many kinds, from many addresses)", "", self.forgotten))
        return out


def kind_of(reason: str) -> str:
    """What a reason's lines are limited as (``extra={"limit_kind": ...}``): its words up to
    the first colon, numbers left out ("unsupported protocol version N", "not valid JSON")."""
    return re.sub(r"\d+", "N", reason.partition(":")[0])[:60]


def install(*names: str, wide_burst: int = 100) -> None:
    """Put one RepeatFilter on each named logger (once; a later call, a new receiver in the
    same process, sets its total and starts its counts afresh: what an earlier receiver
    logged is not the new one's to be limited by)."""
    for name in names:
        logger = logging.getLogger(name)
        mine = [f for f in logger.filters if isinstance(f, RepeatFilter)]
        if not mine:
            mine = [RepeatFilter()]
            logger.addFilter(mine[0])
        mine[0].wide_burst = wide_burst
        mine[0].reset()


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
