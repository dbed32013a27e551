"""Log lines an attacker cannot multiply nor use to hide others'."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from micwire.receiver import logs


@contextlib.contextmanager
def shown_through(limiter: logs.RepeatFilter) -> Iterator[tuple[logging.Logger, list[str]]]:
    """A logger behind ``limiter``, and the messages that got through it."""
    logger = logging.getLogger(f"micwire.test.logs.{id(limiter)}")
    logger.addFilter(limiter)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger, seen
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(limiter)


def test_a_flood_from_one_peer_is_cut_and_counted_and_others_still_show() -> None:
    limiter = logs.RepeatFilter(burst=3, period_s=60)
    with shown_through(limiter) as (logger, seen):
        logs.PEER.set("10.0.0.66")
        for k in range(100):
            logger.warning("stream %r from %s", f"spam{k}", "10.0.0.66")
        logs.PEER.set("10.0.0.7")
        logger.warning("stream %r from %s", "legit", "10.0.0.7")
    assert len(seen) == 4 and seen[-1] == "stream 'legit' from 10.0.0.7"
    assert limiter.left_out() == [("stream %r from %s", "10.0.0.66", 97)]


def test_streams_sharing_an_address_each_show_their_lines_within_a_total() -> None:
    """Senders behind one NAT or load balancer: every admitted stream's start shows, a
    stream's own repeats are cut at the burst, and the address's total at the wide burst."""
    limiter = logs.RepeatFilter(burst=2, period_s=60, wide_burst=10)
    with shown_through(limiter) as (logger, seen):

        def log_as(stream: str, times: int) -> None:
            def run() -> None:
                logs.PEER.set("10.0.0.1")
                logs.STREAM.set(stream)
                for _ in range(times):
                    logger.info("stream %r from %s", stream, "10.0.0.1")

            contextvars.copy_context().run(run)  # as each connection's own task

        for k in range(6):
            log_as(f"room-{k}", 1)
        assert seen == [f"stream 'room-{k}' from 10.0.0.1" for k in range(6)]
        log_as("room-0", 3)  # its second passes, the rest is cut
        assert len(seen) == 7
        for k in range(6, 20):
            log_as(f"room-{k}", 1)  # the address's total: 10 lines
        assert len(seen) == 10
    assert limiter.left_out() == [("stream %r from %s", "10.0.0.1", 2 + 14 - 3)]


def test_formatted_lines_from_workers_count_by_their_template() -> None:
    """``--workers N``: the supervisor limits the lines every worker sends it (already
    formatted) by the template each carries, so N workers do not let N times as many by."""
    limiter = logs.RepeatFilter(burst=3, period_s=60)

    def worker_line(k: int) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "micwire.receiver",
                "msg": f"refused 10.0.0.66:{k}: bad token",
                "template": "refused %s: %s",
            }
        )

    def run() -> list[bool]:
        logs.PEER.set("10.0.0.66")
        return [bool(limiter.filter(worker_line(k))) for k in range(10)]

    assert contextvars.copy_context().run(run) == [True] * 3 + [False] * 7
    assert limiter.left_out() == [("refused %s: %s", "10.0.0.66", 7)]


def test_lines_about_a_stream_from_elsewhere_count_against_that_stream() -> None:
    """The once-a-second alert lines are logged by no connection: each stream's count
    against that stream and its address, so five noisy streams cannot hide a sixth's."""
    limiter = logs.RepeatFilter(burst=1, period_s=60)
    before = logs.PEER.get(), logs.STREAM.get()
    with shown_through(limiter) as (logger, seen):
        for k in range(6):
            with logs.about(f"10.0.0.66:{4000 + k}", f"noisy{k}"):
                logger.warning("stream %r: alert %s", f"noisy{k}", "silence")
        with logs.about("2001:db8::7:5000", "victim"):
            logger.warning("stream %r: alert %s", "victim", "silence")
            assert logs.PEER.get() == "2001:db8::7"
    assert seen[-1] == "stream 'victim': alert silence" and len(seen) == 7
    assert (logs.PEER.get(), logs.STREAM.get()) == before  # as it was after the block


def test_lines_left_out_stay_counted_when_their_kind_is_forgotten() -> None:
    limiter = logs.RepeatFilter(burst=1, period_s=60, max_kinds=4)
    with shown_through(limiter) as (logger, seen):
        logs.PEER.set("10.0.0.66")
        for _ in range(3):
            logger.warning("bad hello from %s", "10.0.0.66")
        for k in range(10):  # many addresses: the limiter forgets the oldest kinds
            logs.PEER.set(f"10.0.1.{k}")
            logger.warning("bad hello from %s", f"10.0.1.{k}")
    assert len(seen) == 11
    assert ("(of many kinds, from many addresses)", "", 2) in limiter.left_out()


def test_each_reason_is_shown_and_all_reasons_together_are_bounded() -> None:
    """Twenty different refusals from one address were merged into "(and 30 more like this,
    not shown)": a user never saw why. Each reason now passes its own burst; an attacker
    choosing ever new reasons still gets at most the kinds' total."""
    limiter = logs.RepeatFilter(burst=2, period_s=60, kinds_burst=6)
    reasons = ["not valid JSON: x", "unsupported protocol version 9", "no hello within 10 s"]
    with shown_through(limiter) as (logger, seen):
        logs.PEER.set("10.0.0.9")
        for reason in reasons * 4:
            logger.warning(
                "refused %s: %s", "10.0.0.9", reason, extra={"limit_kind": logs.kind_of(reason)}
            )
        assert [line.split(": ", 1)[1] for line in seen] == reasons * 2
        for k in range(50):  # a flood of reasons of its own making
            reason = f"stream name 'n{k}' is in use"
            logger.warning(
                "refused %s: %s", "10.0.0.9", reason, extra={"limit_kind": logs.kind_of(reason)}
            )
    assert len(seen) == 6
    left = dict(((msg, n) for msg, _, n in limiter.left_out()))
    assert left["refused %s: %s (not valid JSON)"] == 2
    assert left["refused %s: %s (unsupported protocol version N)"] == 2
    assert sum(left.values()) == 3 * 2 + 50


def test_kinds_leave_out_the_details() -> None:
    assert logs.kind_of("unsupported protocol version 9") == "unsupported protocol version N"
    assert logs.kind_of("not valid JSON: Expecting value: line 1") == "not valid JSON"
