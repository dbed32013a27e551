"""How ``--workers`` shows every worker's streams as one receiver's (pure)."""

from __future__ import annotations

from micwire.receiver.control import merge_views


def test_a_name_is_listed_once_live_over_ended_and_the_latest_ended() -> None:
    views = [
        {"stream": "a", "state": "ended", "ended_utc": 200.0, "seconds": 0.5},
        {"stream": "a", "state": "ended", "ended_utc": 100.0, "seconds": 2.0},
        {"stream": "b", "state": "ended", "ended_utc": 100.0},
        {"stream": "b", "state": "live", "ended_utc": None},
        {"stream": "c", "state": "ended", "ended_utc": 100.0},
        {"stream": "c", "state": "ended", "ended_utc": 300.0, "seconds": 9.0},
        {"state": "live"},  # no name: not a view
    ]
    for order in (views, views[::-1]):  # whichever worker answers first
        merged = {v["stream"]: v for v in merge_views(order, 10)}
        assert sorted(merged) == ["a", "b", "c"]
        assert merged["a"]["seconds"] == 0.5 and merged["c"]["seconds"] == 9.0
        assert merged["b"]["state"] == "live"
    assert len(merge_views(views, 1)) == 2  # the live one, and one ended


def test_the_latest_ended_streams_over_every_worker_are_listed() -> None:
    """Each worker lists its own; whichever answers first, the same latest ones show."""
    first = [{"stream": f"a{k}", "state": "ended", "ended_utc": 100.0 + k} for k in range(5)]
    second = [{"stream": f"b{k}", "state": "ended", "ended_utc": 102.5 + k} for k in range(5)]
    live = [{"stream": "z", "state": "live", "ended_utc": None}]
    for views in (first + second + live, live + second + first):
        merged = merge_views(views, 4)
        assert sorted(v["stream"] for v in merged) == ["a4", "b2", "b3", "b4", "z"]
