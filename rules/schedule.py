"""When a rule applies: the `schedule:` of a rule file and its compiled, timezone-aware form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from ingest.config import Strict
from rules.fields import Names, unknown

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _parse_window(text: Any) -> tuple[time, time]:
    if not isinstance(text, str) or (match := _WINDOW.fullmatch(text.strip())) is None:
        raise ValueError("expected a time-of-day window like '07:00-22:00' (or '22:00-06:00')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 == 0:
        h2, m2 = 0, 0
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError("hours are 00-23 (24:00 as an end), minutes 00-59")
    return time(h1, m1), time(h2, m2)


class Schedule(Strict):
    """When the rule applies, in the site's timezone unless `timezone` says otherwise."""

    windows: list[str] = Field(default_factory=lambda: ["00:00-24:00"])
    """Time-of-day windows; a window whose end is before its start runs over midnight."""
    weekdays: Names = Field(default_factory=lambda: list(_WEEKDAYS))
    """Days the window starts on: mon tue wed thu fri sat sun."""
    timezone: str | None = None

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for item in value:
            _parse_window(item)
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        out = []
        for day in value:
            key = str(day).strip().lower()[:3]
            if key not in _WEEKDAYS:
                raise ValueError(unknown("weekday", str(day), list(_WEEKDAYS)))
            out.append(key)
        return out

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown IANA timezone {value!r} (e.g. 'Asia/Shanghai')"
                ) from None
        return value


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    windows: tuple[tuple[int, int], ...]
    """(start, end) in minutes of the day; end <= start runs over midnight."""
    weekdays: frozenset[int]
    tz: tzinfo

    @classmethod
    def of(cls, schedule: Schedule | None, site_tz: tzinfo) -> CompiledSchedule | None:
        if schedule is None:
            return None
        windows = []
        for text in schedule.windows:
            a, b = _parse_window(text)
            windows.append((a.hour * 60 + a.minute, b.hour * 60 + b.minute))
        days = frozenset(_WEEKDAYS.index(d) for d in schedule.weekdays)
        tz = ZoneInfo(schedule.timezone) if schedule.timezone else site_tz
        return cls(tuple(windows), days, tz)

    def active(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute + local.second / 60
        day = local.weekday()
        for start, end in self.windows:
            if start < end:
                if day in self.weekdays and start <= minute < end:
                    return True
            else:  # over midnight (or all day when start == end == 0)
                if day in self.weekdays and minute >= start:
                    return True
                if (day - 1) % 7 in self.weekdays and minute < end:
                    return True
        return False

    def next_active(self, at: datetime, horizon_s: float = 8 * 86400) -> datetime | None:
        """The first moment at or after `at` inside the schedule (None within the horizon)."""
        if self.active(at):
            return at
        local = at.astimezone(self.tz)
        day0 = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        best: datetime | None = None
        for offset in range(9):
            for start, _end in self.windows:
                naive = day0 + timedelta(days=offset, minutes=start)
                candidate = naive.replace(tzinfo=self.tz)
                if candidate.astimezone(at.tzinfo) <= at:
                    continue
                if self.active(candidate) and (best is None or candidate < best):
                    best = candidate
            if best is not None:
                break
        if best is None or (best - at).total_seconds() > horizon_s:
            return None
        return best.astimezone(at.tzinfo)
