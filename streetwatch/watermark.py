"""Event time across many devices: the slowest live device holds the clock back.

Each device's stream is nearly in order, but devices disagree: a camera stamps frames with the
box's clock while a GPS unit that buffered through a tunnel reports minutes late. Advancing the
rules engine by the newest time seen anywhere would make every slower device's observations
"late". As in stream processors (Flink's per-partition watermarks), the clock the engine sees is
the minimum over devices heard from recently; a device silent for `idle_after_s` of wall time
stops holding it back, and while every device is silent the clock moves on with the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta


class Watermark:
    def __init__(
        self, idle_after_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_after_s = idle_after_s
        self._monotonic = monotonic
        self._latest: dict[str, tuple[datetime, float]] = {}
        self._value: datetime | None = None

    def observe(self, device_id: str, event_ts: datetime) -> None:
        now = self._monotonic()
        seen = self._latest.get(device_id)
        if seen is None or event_ts > seen[0]:
            self._latest[device_id] = (event_ts, now)
        else:
            self._latest[device_id] = (seen[0], now)

    def value(self) -> datetime | None:
        """The event time every live device has reached; never moves backwards."""
        if not self._latest:
            return self._value
        now = self._monotonic()
        live = [ts for ts, heard in self._latest.values() if now - heard < self.idle_after_s]
        if live:
            candidate = min(live)
        else:
            newest, heard = max(self._latest.values(), key=lambda item: item[0])
            candidate = newest + timedelta(seconds=now - heard)
        if self._value is None or candidate > self._value:
            self._value = candidate
        return self._value
