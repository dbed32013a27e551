"""Log lines an attacker cannot multiply nor use to hide others'."""

from __future__ import annotations

import logging

from micwire.receiver import logs


def test_a_flood_from_one_peer_is_cut_and_counted_and_others_still_show() -> None:
    logger = logging.getLogger("micwire.test.logs")
    logger.filters.clear()
    limiter = logs.RepeatFilter(burst=3, period_s=60)
    logger.addFilter(limiter)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logs.PEER.set("10.0.0.66")
        for k in range(100):
            logger.warning("stream %r from %s", f"spam{k}", "10.0.0.66")
        logs.PEER.set("10.0.0.7")
        logger.warning("stream %r from %s", "legit", "10.0.0.7")
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 4 and seen[-1] == "stream 'legit' from 10.0.0.7"
    assert limiter.left_out() == [("stream %r from %s", "10.0.0.66", 97)]
