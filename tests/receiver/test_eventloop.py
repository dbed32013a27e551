"""The receiver's event loop gathers wake-ups only when told to, and never makes a timer
late (micwire.receiver.eventloop)."""

from __future__ import annotations

import asyncio
import selectors
import socket
import time

from micwire.receiver import eventloop


def test_the_selector_looks_once_per_interval_and_never_past_a_timeout() -> None:
    a, b = socket.socketpair()
    selector = eventloop.GatheringSelector()
    try:
        selector.register(a, selectors.EVENT_READ)
        b.send(b"x")
        assert len(selector.select(None)) == 1  # interval 0: at once
        selector.interval_s = 0.2
        start = time.monotonic()
        assert len(selector.select(None)) == 1  # ready all along, seen 0.2 s after the last look
        assert time.monotonic() - start >= 0.19
        start = time.monotonic()
        assert len(selector.select(0.05)) == 1  # a timer due in 50 ms is not made late
        assert 0.04 <= time.monotonic() - start < 0.19
        assert len(selector.select(0)) == 1  # ready callbacks never wait
    finally:
        selector.close()
        a.close()
        b.close()


def test_the_receiver_loop_takes_the_interval_and_others_ignore_it() -> None:
    async def interval() -> float:
        eventloop.gather_wakeups(0.05)
        selector = eventloop._SELECTORS.get(asyncio.get_running_loop())
        return -1.0 if selector is None else selector.interval_s

    loop = eventloop.new_event_loop()
    try:
        assert loop.run_until_complete(interval()) == 0.05
    finally:
        loop.close()
    assert asyncio.run(interval()) == -1.0  # a plain asyncio loop: nothing to set
