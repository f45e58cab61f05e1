"""GPS fix filters, in the order mature trackers (Traccar's FilterHandler) apply them.

A fix is judged against the last fix that passed. Each rejection has a reason, counted by the
caller: `invalid` (the receiver says no fix, or coordinates out of range), `zero` (0, 0: an
unset position), `future` (timestamped ahead of its arrival), `past` (flagged by ingestion as
far in the past), `out_of_order` (older than the last good fix), `duplicate` (same time as the
last good fix), `hdop` and `sats` (too inaccurate), `jump` (the implied speed from the last good
fix is impossible).

A jump filter that only ever compares with the last good fix locks out a vehicle for good once
that fix was the outlier, or once the vehicle really moved while its receiver was off. So a run
of `REANCHOR_FIXES` rejected fixes that are consistent with each other is accepted as the new
truth (counted as `reanchored`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ingest.config import GpsFilters
from ingest.coords import distance_m
from ingest.readings import TimeFlag

REANCHOR_FIXES = 3
KMH_PER_MS = 3.6


class Rejection(StrEnum):
    INVALID = "invalid"
    ZERO = "zero"
    FUTURE = "future"
    PAST = "past"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    HDOP = "hdop"
    SATS = "sats"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fix as the filter sees it: position, time and what the receiver says about it."""

    ts: datetime
    lat: float
    lon: float
    valid: bool = True
    hdop: float | None = None
    sats: int | None = None
    received_ts: datetime | None = None
    time_flag: TimeFlag = TimeFlag.OK


def candidate_to_dict(fix: Candidate) -> dict[str, Any]:
    """JSON-ready, for the detectors' saved state."""
    return {
        "ts": fix.ts.isoformat(),
        "lat": fix.lat,
        "lon": fix.lon,
        "valid": fix.valid,
        "hdop": fix.hdop,
        "sats": fix.sats,
        "received_ts": None if fix.received_ts is None else fix.received_ts.isoformat(),
        "time_flag": fix.time_flag.value,
    }


def candidate_from_dict(data: Mapping[str, Any]) -> Candidate:
    received = data.get("received_ts")
    return Candidate(
        ts=datetime.fromisoformat(data["ts"]),
        lat=float(data["lat"]),
        lon=float(data["lon"]),
        valid=bool(data.get("valid", True)),
        hdop=data.get("hdop"),
        sats=data.get("sats"),
        received_ts=None if received is None else datetime.fromisoformat(received),
        time_flag=TimeFlag(data.get("time_flag", TimeFlag.OK.value)),
    )


def implied_speed_kmh(a: Candidate, b: Candidate) -> float:
    seconds = (b.ts - a.ts).total_seconds()
    metres = distance_m((a.lat, a.lon), (b.lat, b.lon))
    if seconds <= 0:
        return math.inf if metres > 0 else 0.0
    return metres / seconds * KMH_PER_MS


class FixFilter:
    """Stateful filter for one device: `check` returns None (accepted) or the reason."""

    def __init__(self, settings: GpsFilters) -> None:
        self.settings = settings
        self.last: Candidate | None = None
        self._jumps: list[Candidate] = []
        self.reanchored = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "last": None if self.last is None else candidate_to_dict(self.last),
            "jumps": [candidate_to_dict(fix) for fix in self._jumps],
            "reanchored": self.reanchored,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        last = data.get("last")
        self.last = None if last is None else candidate_from_dict(last)
        self._jumps = [candidate_from_dict(fix) for fix in data.get("jumps") or ()]
        self.reanchored = int(data.get("reanchored", 0))

    def check(self, fix: Candidate) -> Rejection | None:
        reason = self._reason(fix)
        if reason is None:
            self.last = fix
            self._jumps.clear()
        return reason

    def _reason(self, fix: Candidate) -> Rejection | None:
        s = self.settings
        if (
            not fix.valid
            or not (math.isfinite(fix.lat) and math.isfinite(fix.lon))
            or not (-90 <= fix.lat <= 90 and -180 <= fix.lon <= 180)
        ):
            return Rejection.INVALID
        if fix.lat == 0 and fix.lon == 0:
            return Rejection.ZERO
        if fix.time_flag is TimeFlag.FUTURE or (
            fix.received_ts is not None
            and (fix.ts - fix.received_ts).total_seconds() > s.max_future_s
        ):
            return Rejection.FUTURE
        if fix.time_flag is TimeFlag.PAST:
            return Rejection.PAST
        last = self.last
        if last is not None:
            if fix.ts < last.ts:
                return Rejection.OUT_OF_ORDER
            if fix.ts == last.ts:
                return Rejection.DUPLICATE
        if s.max_hdop is not None and fix.hdop is not None and fix.hdop > s.max_hdop:
            return Rejection.HDOP
        if s.min_sats is not None and fix.sats is not None and fix.sats < s.min_sats:
            return Rejection.SATS
        if last is not None and implied_speed_kmh(last, fix) > s.max_speed_kmh:
            return self._jump(fix)
        return None

    def _jump(self, fix: Candidate) -> Rejection | None:
        if self._jumps and implied_speed_kmh(self._jumps[-1], fix) > self.settings.max_speed_kmh:
            self._jumps.clear()
        self._jumps.append(fix)
        if len(self._jumps) >= REANCHOR_FIXES:
            self.reanchored += 1
            return None
        return Rejection.JUMP


__all__ = [
    "REANCHOR_FIXES",
    "Candidate",
    "FixFilter",
    "Rejection",
    "candidate_from_dict",
    "candidate_to_dict",
    "implied_speed_kmh",
]
