"""Why a receiver could not be reached, in a few words a person reads."""

from __future__ import annotations

import asyncio
import socket

import pytest

from micwire.sender.link import _why


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"), "Connection refused"),
        # a name with an IPv6 and an IPv4 address: asyncio joins the two failures
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 9)"
            ),
            "Connection refused",
        ),
        (socket.gaierror(-2, "Name or service not known"), "Name or service not known"),
        (asyncio.TimeoutError(), "no answer"),
    ],
)
def test_why_a_receiver_is_not_reachable(error: BaseException, words: str) -> None:
    assert _why(error) == words
