"""What a sender keeps of a stream for its next process: keys, the entry, the hello."""

from __future__ import annotations

import json

import pytest

from micwire.common.protocol import Hello, StreamParams
from micwire.common.resume import ResumeEntry, entry_stem, receiver_key

ENTRY = ResumeEntry(
    "ws://studio.local:8765/",
    "kitchen mic",
    "5f0c2d",
    "q1Zp3XvM0b5oR8Zk2gW9kVd7bQhY4s1T",
    StreamParams("opus", 48000, 2, 20.0, 64000, 312),
    1_795_000_000_000_000,
)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("ws://studio.local:8765", "ws://studio.local:8765/"),
        ("WS://Studio.Local:8765/", "ws://studio.local:8765/"),
        ("ws://studio.local.:8765/", "ws://studio.local:8765/"),
        ("ws://studio.local", "ws://studio.local:80/"),
        ("wss://studio.local", "wss://studio.local:443/"),
        ("wss://studio.local:443/#x", "wss://studio.local:443/"),
        ("ws://user:pw@studio.local:8765", "ws://studio.local:8765/"),
        ("ws://[::1]:8765", "ws://[::1]:8765/"),
        # a load balancer may route on the path (docs/DEPLOY.md): another receiver
        ("ws://lb:8765/stream/kitchen", "ws://lb:8765/stream/kitchen"),
        ("ws://lb:8765/?a=1", "ws://lb:8765/?a=1"),
    ],
)
def test_one_receiver_one_key(url: str, key: str) -> None:
    assert receiver_key(url) == key


@pytest.mark.parametrize("url", ["http://studio:8765", "ws://", "studio:8765"])
def test_what_is_not_a_receiver_url_has_no_key(url: str) -> None:
    with pytest.raises(ValueError):
        receiver_key(url)


def test_each_receiver_and_exact_name_has_its_own_readable_entry() -> None:
    stems = {
        entry_stem("ws://a:1/", "kitchen"),
        entry_stem("ws://b:1/", "kitchen"),
        entry_stem("ws://a:1/", "a/b"),
        entry_stem("ws://a:1/", "a?b"),
        entry_stem("ws://a:1/", "Kitchen"),
    }
    assert len(stems) == 5
    assert entry_stem("ws://a:1/", "kitchen").startswith("kitchen-")
    assert entry_stem("ws://a:1/", "kitchen") == entry_stem("ws://a:1/", "kitchen")
    # nothing of a name reaches the path but letters, digits, ._-
    assert entry_stem("ws://a:1/", "../../etc/passwd").startswith("etc_passwd-")


def test_an_entry_round_trips() -> None:
    assert ResumeEntry.parse(ENTRY.to_json()) == ENTRY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        json.dumps({"micwire_resume": 99}),
        ENTRY.to_json().replace('"rate_hz": 48000', '"rate_hz": "48000"'),
        ENTRY.to_json().replace('"rate_hz": 48000', '"rate_hz": 44100'),  # not for Opus
        ENTRY.to_json().replace(ENTRY.resume_secret, ""),
        ENTRY.to_json().replace(ENTRY.resume_secret, "not a secret!"),
        ENTRY.to_json().replace('"5f0c2d"', '"../x"'),
        ENTRY.to_json().replace('"kitchen mic"', '""'),
    ],
)
def test_what_is_not_a_usable_entry_is_nothing_to_end(text: str) -> None:
    assert ResumeEntry.parse(text) is None


def test_the_ending_hello_proves_the_stream_and_says_the_sender_restarted() -> None:
    hello = Hello.parse(ENTRY.ending_hello(1_795_000_090_000_000, "micwire/x").serialize())
    assert (hello.stream, hello.stream_id, hello.params) == (
        ENTRY.stream,
        ENTRY.stream_id,
        ENTRY.params,
    )
    assert hello.resuming and hello.restarted and hello.resume_secret == ENTRY.resume_secret
    assert hello.start_time_us == ENTRY.start_time_us
