"""A stream's levels and alerts: the sink that folds what it is given (no queue).

The level meter keeps the last second of audio, read (never reset) by every view: the
page, the terminal table, the stats lines, /metrics. Once a second the alert rules
(common/alerts.py) look at the last second's levels and the stream's state.
"""

from __future__ import annotations

import time
from typing import Any

from ..common.alerts import AlertRules, StreamAlerts
from ..common.levels import LevelMeter
from .sinks import Delivery


class Meters:
    def __init__(self, stream: str, rules: AlertRules) -> None:
        self.levels = LevelMeter()
        self.alerts = StreamAlerts(stream, rules)
        self._created = time.monotonic()

    def deliver(self, delivery: Delivery) -> None:
        for segment in delivery.segments:
            if not isinstance(segment, int):
                self.levels.add(segment, delivery.arrival)

    def read(self, window_s: float) -> tuple[float, float]:
        """Peak and RMS level (dBFS) over the last ``window_s`` seconds."""
        return self.levels.read(time.monotonic(), window_s)

    def check(self, now: float, state: str) -> list[Any]:
        """Once a second: the alert rules on the last second's levels and ``state``
        (live, parked, ended, ended_complete); what changed."""
        window = min(1.0, time.monotonic() - self._created)
        peak, rms = self.read(window)
        return self.alerts.update(now, state, rms, peak, window)
