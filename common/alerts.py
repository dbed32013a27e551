"""Alerts a person monitoring a room wants (pure: figures in, alert changes out).

- ``silence`` ("dead air"): the level stays below ``silence_dbfs`` for ``silence_s``;
  clears as soon as it is back above.
- ``clipping``: the signal reached full scale (peak at or above ``clip_dbfs``); clears
  after ``clip_clear_s`` without clipping.
- ``down``: the stream's sender disconnected and is not back within ``down_s``; clears
  when it is back (or the stream ended normally).

:class:`StreamAlerts` is fed once in a while (the receiver does it every second) with the
stream's state and its RMS and peak level since the last call, and returns what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SILENCE, CLIPPING, DOWN = "silence", "clipping", "down"


@dataclass(frozen=True)
class AlertRules:
    silence_dbfs: float = -60.0
    silence_s: float = 30.0
    clip_dbfs: float = -0.1
    clip_clear_s: float = 5.0
    down_s: float = 10.0


@dataclass
class Alert:
    kind: str
    stream: str
    since: float  # when the condition began (s since the Unix epoch)
    message: str
    active: bool = True

    def event(self, now: float) -> dict[str, object]:
        """What a webhook receives."""
        return {
            "alert": self.kind,
            "stream": self.stream,
            "state": "raised" if self.active else "cleared",
            "since": self.since,
            "time": now,
            "message": self.message,
        }


@dataclass
class StreamAlerts:
    stream: str
    rules: AlertRules = field(default_factory=AlertRules)
    active: dict[str, Alert] = field(default_factory=dict)
    _quiet_since: float | None = None
    _last_clip: float | None = None
    _down_since: float | None = None

    def update(
        self, now: float, state: str, rms_dbfs: float, peak_dbfs: float, window_s: float = 0.0
    ) -> list[Alert]:
        """``state``: live, reconnecting, ended or ended_complete; levels over the last
        ``window_s`` (only meaningful while live: a level that is low now has been low for
        the whole window). Returns the alerts raised or cleared now."""
        r = self.rules
        changes: list[Alert] = []
        if state == "live":
            self._down_since = None
            changes += self._clear(DOWN)
            if rms_dbfs < r.silence_dbfs:
                if self._quiet_since is None:
                    self._quiet_since = now - window_s
                if now - self._quiet_since >= r.silence_s:
                    changes += self._raise(
                        SILENCE,
                        self._quiet_since,
                        f"silent (below {r.silence_dbfs:g} dBFS) for {r.silence_s:g} s",
                    )
            else:
                self._quiet_since = None
                changes += self._clear(SILENCE)
            if peak_dbfs >= r.clip_dbfs:
                if self._last_clip is None or CLIPPING not in self.active:
                    changes += self._raise(CLIPPING, now, "clipping: the signal hit full scale")
                self._last_clip = now
            elif self._last_clip is not None and now - self._last_clip >= r.clip_clear_s:
                self._last_clip = None
                changes += self._clear(CLIPPING)
        else:
            self._quiet_since = None  # a stream that is not live is down, not silent
            changes += self._clear(SILENCE) + self._clear(CLIPPING)
            if state == "ended_complete":
                self._down_since = None
                changes += self._clear(DOWN)
            else:
                if self._down_since is None:
                    self._down_since = now
                if now - self._down_since >= r.down_s:
                    changes += self._raise(
                        DOWN, self._down_since, f"disconnected, not back within {r.down_s:g} s"
                    )
        return changes

    def clear_all(self) -> list[Alert]:
        """Clear whatever is raised (a new stream of the same name took over)."""
        return [change for kind in list(self.active) for change in self._clear(kind)]

    def _raise(self, kind: str, since: float, message: str) -> list[Alert]:
        if kind in self.active:
            return []
        alert = Alert(kind, self.stream, since, message)
        self.active[kind] = alert
        return [alert]

    def _clear(self, kind: str) -> list[Alert]:
        alert = self.active.pop(kind, None)
        if alert is None:
            return []
        return [Alert(kind, self.stream, alert.since, alert.message, active=False)]
