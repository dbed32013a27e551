from __future__ import annotations

from micwire.common.alerts import AlertRules, StreamAlerts

RULES = AlertRules(silence_dbfs=-60, silence_s=3, clip_dbfs=-0.1, clip_clear_s=2, down_s=5)


def kinds(changes: list[object]) -> list[tuple[str, bool]]:
    return [(c.kind, c.active) for c in changes]  # type: ignore[attr-defined]


def test_silence_is_raised_after_its_time_and_cleared_when_sound_returns() -> None:
    a = StreamAlerts("room", RULES)
    assert a.update(100, "live", -70, -65, window_s=1) == []  # quiet since 99
    assert a.update(101, "live", -70, -65, window_s=1) == []
    raised = a.update(102, "live", -70, -65, window_s=1)
    assert kinds(raised) == [("silence", True)] and raised[0].since == 99
    assert "below -60 dBFS" in raised[0].message
    assert a.update(103, "live", -70, -65) == []  # raised once, not every second
    event = a.update(104, "live", -20, -10)[0].event(104)
    assert (event["alert"], event["state"], event["stream"]) == ("silence", "cleared", "room")


def test_clipping_clears_after_a_while_without() -> None:
    a = StreamAlerts("room", RULES)
    assert kinds(a.update(10, "live", -6, 0.0)) == [("clipping", True)]
    assert a.update(11, "live", -6, 0.0) == []
    assert a.update(12, "live", -6, -3) == []  # 1 s clean: not yet
    assert kinds(a.update(13.5, "live", -6, -3)) == [("clipping", False)]


def test_down_after_its_grace_and_back_when_the_sender_is() -> None:
    a = StreamAlerts("room", RULES)
    a.update(0, "live", -70, -70, window_s=1)
    a.update(1, "live", -70, -70, window_s=1)
    assert kinds(a.update(2, "live", -70, -70, window_s=1)) == [("silence", True)]
    assert kinds(a.update(3, "parked", -120, -120)) == [("silence", False)]  # down, not silent
    assert a.update(7, "parked", -120, -120) == []
    assert kinds(a.update(8, "parked", -120, -120)) == [("down", True)]
    assert kinds(a.update(9, "live", -20, -10)) == [("down", False)]


def test_a_stream_that_ended_normally_is_not_down() -> None:
    a = StreamAlerts("room", RULES)
    a.update(0, "ended", -120, -120)
    assert kinds(a.update(6, "ended", -120, -120)) == [("down", True)]
    assert kinds(a.update(7, "ended_complete", -120, -120)) == [("down", False)]
    assert a.update(20, "ended_complete", -120, -120) == []


def test_everything_raised_clears_at_once_when_a_new_stream_takes_the_name() -> None:
    a = StreamAlerts("room", RULES)
    a.update(0, "ended", -120, -120)
    assert kinds(a.update(6, "ended", -120, -120)) == [("down", True)]
    assert kinds(a.clear_all()) == [("down", False)] and not a.active
    assert a.clear_all() == []
