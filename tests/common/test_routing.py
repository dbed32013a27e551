"""Which worker owns a stream: the same answer in every process, spread over workers, and
read from the request line as a sender or a listener sends it."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from micwire.common.routing import name_in_path, owner, request_path, stream_url


def test_every_process_gives_a_name_the_same_owner() -> None:
    """Not Python's hash(), which each process salts differently."""
    names = ["kitchen", "кухня", "a/b", "\U0001f3b5", ""]
    code = f"from micwire.common.routing import owner\nprint([owner(n, 7) for n in {names!r}])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str([owner(n, 7) for n in names])


def test_names_spread_over_the_workers() -> None:
    counts = Counter(owner(f"room-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 900  # a quarter each, give or take


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/stream/kitchen", "kitchen"),
        ("/stream/kit%20chen?x=1", "kit chen"),
        ("/stream/%D0%BA%D1%83%D1%85%D0%BD%D1%8F/extra", "кухня"),
        ("/api/listen/hall?format=pcm", "hall"),
        ("/stream/", None),
        ("/", None),
        ("/api/streams", None),
        ("/recordings/stream/x.wav", None),
    ],
)
def test_the_name_in_a_path(path: str, name: str | None) -> None:
    assert name_in_path(path) == name


def test_a_request_line_is_read_once_whole() -> None:
    assert request_path(b"GET /stream/a HTTP/1.1\r\nHost: x\r\n") == "/stream/a"
    assert request_path(b"GET /stream/a HTTP/1.1") is None  # not whole yet
    assert request_path(b"\x16\x03\x01 tls\r\n") is None  # not HTTP


@pytest.mark.parametrize(
    ("url", "connects_to"),
    [
        ("ws://studio:8765", "ws://studio:8765/stream/kit%2Fchen"),
        ("wss://studio:8765/", "wss://studio:8765/stream/kit%2Fchen"),
        ("ws://lb:8765/stream/kitchen", "ws://lb:8765/stream/kitchen"),  # a path given stays
        ("ws://[::1]:8765", "ws://[::1]:8765/stream/kit%2Fchen"),
    ],
)
def test_a_sender_connects_to_its_streams_path(url: str, connects_to: str) -> None:
    assert stream_url(url, "kit/chen") == connects_to
    assert name_in_path(stream_url(url, "kit/chen").split("8765", 1)[1]) in ("kit/chen", "kitchen")
