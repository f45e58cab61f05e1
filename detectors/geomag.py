"""Parking-bay occupancy from a raw geomagnetic sensor (x/y/z in µT).

A car's steel bends the Earth's field by some 10-100 µT over the sensor. The detector keeps the
empty bay's field as a baseline, which follows slow drift (temperature, the Earth's own field)
with a long time constant, and only while the bay is clearly vacant: a parked car must never be
learnt into the baseline. The magnitude of the deviation from the baseline drives a hysteresis
state machine: occupied once it has stayed above `enter_ut` for `min_occupied_s`, vacant again
once it has stayed below `exit_ut` for `min_vacant_s`. Engine vibration while a car idles is
noise around a large deviation, and a car in the next bay a small deviation below `enter_ut`.

A dead sensor must not look like an empty bay. A sensor that stops reporting is `stale` (found by
`tick`), one that repeats the same values is on a `flat_line`: both give a DEVICE_HEALTH
observation and freeze the bay's state until real readings return. A reading identical to the
previous one never moves the state machine either, so a sensor that dies with a stuck value does
not flip the bay before the flat line is recognised.

Each state is its own situation: `occupied` from the moment the deviation first crossed
`enter_ut` (its start time), `vacant` from the moment it dropped below `exit_ut`. When a stay
ends, the occupied situation gets a last update ending at the vacancy's start.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import Device, GeomagSettings

UPDATE_EVERY_S = 1.0
HEALTH_REPEAT_S = 60.0
"""A device-health problem that lasts is repeated this often (same situation)."""
BASELINE_SAMPLES = 3
"""Readings averaged into the first baseline when none is configured or after recalibration."""


class BayState(StrEnum):
    VACANT = "vacant"
    OCCUPIED = "occupied"


Vector = tuple[float, float, float]


@dataclass(slots=True)
class _Span:
    first_seen: datetime
    last_seen: datetime
    last_emitted: datetime | None = None


class _Bay:
    """What every bay sensor shares: state, situations, health and output."""

    subject_is_sensor = False

    def __init__(self, device: Device, stats: Counter[str]) -> None:
        self.device = device
        self.settings = device.geomag or GeomagSettings()
        self.stats = stats
        self.bay = device.bay or device.id
        self.location = (
            None if device.location is None else GeoPoint(device.location.lon, device.location.lat)
        )
        self.zone_kind = None if device.bay_kind is None else device.bay_kind.value
        self.state = BayState.VACANT
        self.known = False
        """Whether the bay's state is known yet (a baseline or a first decision)."""
        self.deviation_ut: float | None = None
        self._span: _Span | None = None
        self._last_ts: datetime | None = None
        self._last_received: datetime | None = None
        self._problem: tuple[str, _Span] | None = None
        self._queued: list[Observation] = []

    def snapshot(self) -> dict[str, Any]:
        """What must survive a restart: the state and when it began (JSON-ready)."""
        return {
            "state": self.state.value if self.known else None,
            "since": None if self._span is None else self._span.first_seen.isoformat(),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        state = data.get("state")
        if state is None:
            return
        self.state = BayState(state)
        self.known = True
        since = data.get("since")
        if since is not None:
            first = datetime.fromisoformat(since)
            self._span = _Span(first, first)

    def _accept(self, ts: datetime, received_ts: datetime) -> bool:
        """Note a reading's arrival; False when it is not newer than the last one."""
        self._last_received = max(self._last_received or received_ts, received_ts)
        if self._last_ts is not None and ts <= self._last_ts:
            self.stats["geomag_out_of_order"] += 1
            return False
        self._last_ts = ts
        return True

    def _recovered(self, ts: datetime) -> list[Observation]:
        if self._problem is None:
            return []
        span = self._problem[1]
        self._problem = None
        return [self._health("ok", span, ts)]

    def tick(self, now: datetime) -> list[Observation]:
        """A sensor silent for `stale_after_s` is `stale` (repeated every HEALTH_REPEAT_S)."""
        out = self._drain()
        if self._last_ts is None or self._last_received is None:
            return out
        last = max(self._last_ts, self._last_received)
        if (now - last).total_seconds() <= self.settings.stale_after_s:
            return out
        if self._problem is None or self._problem[0] != "stale":
            self._problem = ("stale", _Span(last, now))
            self.stats["device_stale"] += 1
        span = self._problem[1]
        if span.last_emitted is None or (now - span.last_emitted).total_seconds() >= (
            HEALTH_REPEAT_S
        ):
            out.append(self._health("stale", span, now))
        return out

    def _drain(self) -> list[Observation]:
        out, self._queued = self._queued, []
        return out

    def _change(self, state: BayState, since: datetime, ts: datetime) -> list[Observation]:
        """The bay turns `state` from `since`; an ongoing stay ends there."""
        out = []
        if self._span is not None and self.state is BayState.OCCUPIED:
            self._span.last_seen = since
            out.append(self._occupancy(BayState.OCCUPIED, self._span))
        self.state = state
        self.known = True
        self._span = _Span(since, ts)
        self.stats[f"geomag_{state.value}"] += 1
        out.append(self._occupancy(state, self._span))
        return out

    def _still(self, ts: datetime) -> list[Observation]:
        """The bay keeps its state at `ts`: an occupied stay is updated about once a second."""
        span = self._span
        if span is None or self.state is not BayState.OCCUPIED:
            return []
        span.last_seen = max(span.last_seen, ts)
        if span.last_emitted is None or (ts - span.last_emitted).total_seconds() >= UPDATE_EVERY_S:
            return [self._occupancy(BayState.OCCUPIED, span)]
        return []

    def _health(self, state: str, span: _Span, ts: datetime) -> Observation:
        span.last_seen = max(span.last_seen, ts)
        span.last_emitted = span.last_seen
        return Observation(
            kind=ObservationKind.DEVICE_HEALTH,
            device_id=self.device.id,
            subject="device",
            subject_id=self.device.id,
            first_seen=span.first_seen,
            last_seen=span.last_seen,
            zone_id=self.bay,
            zone_kind=self.zone_kind,
            state=state,
            location=self.location,
            attributes={"bay_state": self.state.value if self.known else None},
        )

    def _occupancy(self, state: BayState, span: _Span, recalibrated: bool = False) -> Observation:
        span.last_emitted = span.last_seen
        attributes: dict[str, object] = {}
        if self.deviation_ut is not None:
            attributes["deviation_ut"] = round(self.deviation_ut, 2)
        if recalibrated:
            attributes["recalibrated"] = True
        return Observation(
            kind=ObservationKind.OCCUPANCY,
            device_id=self.device.id,
            subject="car",
            subject_id=self.bay,
            first_seen=span.first_seen,
            last_seen=span.last_seen,
            zone_id=self.bay,
            zone_kind=self.zone_kind,
            state=state.value,
            location=self.location,
            attributes=attributes,
        )


class GeomagDetector(_Bay):
    """One raw geomagnetic sensor (x/y/z) watching one bay."""

    def __init__(self, device: Device, stats: Counter[str]) -> None:
        super().__init__(device, stats)
        configured = self.settings.baseline_ut
        self.baseline: Vector | None = None if configured is None else tuple(configured)  # type: ignore[assignment]
        self.known = self.baseline is not None
        self._warmup: list[Vector] = []
        self._pending_since: datetime | None = None
        self._last_value: Vector | None = None
        self._flat_since: datetime | None = None

    def process(self, ts: datetime, value: Vector, received_ts: datetime) -> list[Observation]:
        out = self._drain()
        previous_ts = self._last_ts
        if not self._accept(ts, received_ts):
            return out
        dt = 0.0 if previous_ts is None else (ts - previous_ts).total_seconds()
        repeated = self._last_value is not None and _close(
            value, self._last_value, self.settings.flat_epsilon_ut
        )
        self._last_value = value
        out += self._flat_line(ts, repeated)
        if repeated:
            self.stats["geomag_repeated"] += 1
            return out
        out += self._recovered(ts)
        if self.baseline is None:
            self._warmup.append(value)
            if len(self._warmup) >= BASELINE_SAMPLES:
                self.baseline = _mean(self._warmup)
                self._warmup.clear()
                self.known = True
                self.stats["geomag_baselines"] += 1
            return out
        out += self._step(ts, value, dt)
        return out

    def snapshot(self) -> dict[str, Any]:
        data = _Bay.snapshot(self)
        data["baseline_ut"] = None if self.baseline is None else list(self.baseline)
        return data

    def restore(self, data: Mapping[str, Any]) -> None:
        """A restarted box keeps the learnt baseline: a car parked across the restart is
        still a car, not the empty bay's field."""
        baseline = data.get("baseline_ut")
        if baseline is None:
            return
        x, y, z = (float(v) for v in baseline)
        self.baseline = (x, y, z)
        _Bay.restore(self, data)

    def recalibrate(self) -> None:
        """Take the next readings as the empty bay's field; an occupied bay becomes vacant."""
        self.baseline = None
        self._warmup.clear()
        self._pending_since = None
        self.stats["geomag_recalibrations"] += 1
        when = self._last_ts
        if self.state is BayState.OCCUPIED and self._span is not None and when is not None:
            self._span.last_seen = max(self._span.last_seen, when)
            self._queued.append(self._occupancy(BayState.OCCUPIED, self._span, recalibrated=True))
            self.state = BayState.VACANT
            self._span = _Span(when, when)
            self._queued.append(self._occupancy(BayState.VACANT, self._span, recalibrated=True))

    def _step(self, ts: datetime, value: Vector, dt: float) -> list[Observation]:
        s = self.settings
        assert self.baseline is not None
        deviation = math.dist(value, self.baseline)
        self.deviation_ut = deviation
        if self.state is BayState.VACANT:
            if deviation >= s.enter_ut:
                since = self._pending_since = self._pending_since or ts
                if (ts - since).total_seconds() >= s.min_occupied_s:
                    self._pending_since = None
                    return self._change(BayState.OCCUPIED, since, ts)
                return []
            self._pending_since = None
            if deviation < s.exit_ut:
                self._follow_drift(value, dt)
            return []
        if deviation < s.exit_ut:
            since = self._pending_since = self._pending_since or ts
            if (ts - since).total_seconds() >= s.min_vacant_s:
                self._pending_since = None
                return self._change(BayState.VACANT, since, ts)
            return []
        self._pending_since = None
        return self._still(ts)

    def _follow_drift(self, value: Vector, dt: float) -> None:
        assert self.baseline is not None
        alpha = 1.0 - math.exp(-max(0.0, dt) / self.settings.drift_tau_s)
        self.baseline = (
            self.baseline[0] + alpha * (value[0] - self.baseline[0]),
            self.baseline[1] + alpha * (value[1] - self.baseline[1]),
            self.baseline[2] + alpha * (value[2] - self.baseline[2]),
        )

    def _flat_line(self, ts: datetime, repeated: bool) -> list[Observation]:
        if not repeated:
            self._flat_since = ts
            return []
        since = self._flat_since = self._flat_since or ts
        if (ts - since).total_seconds() < self.settings.flat_after_s:
            return []
        if self._problem is None or self._problem[0] != "flat_line":
            self._problem = ("flat_line", _Span(since, ts))
            self.stats["device_flat_line"] += 1
            return [self._health("flat_line", self._problem[1], ts)]
        span = self._problem[1]
        span.last_seen = ts
        if span.last_emitted is None or (ts - span.last_emitted).total_seconds() >= (
            HEALTH_REPEAT_S
        ):
            return [self._health("flat_line", span, ts)]
        return []


class OnBoardBay(_Bay):
    """A sensor that decides on board (`{ts, occupied}`): its decisions go straight through.

    Its first decision sets the state; a first `vacant` is not reported (nothing changed).
    Heartbeats repeating `occupied` update the stay.
    """

    def process(self, ts: datetime, occupied: bool, received_ts: datetime) -> list[Observation]:
        out = self._drain()
        if not self._accept(ts, received_ts):
            return out
        out += self._recovered(ts)
        state = BayState.OCCUPIED if occupied else BayState.VACANT
        if not self.known and state is BayState.VACANT:
            self.known = True
            self._span = _Span(ts, ts)
            return out
        if not self.known or state is not self.state:
            return out + self._change(state, ts, ts)
        return out + self._still(ts)

    def recalibrate(self) -> None:
        """Nothing to do on this side: the sensor keeps its own baseline."""
        self.stats["geomag_recalibrations_ignored"] += 1


def _close(a: Vector, b: Vector, epsilon: float) -> bool:
    return all(abs(p - q) <= epsilon for p, q in zip(a, b, strict=True))


def _mean(values: list[Vector]) -> Vector:
    n = len(values)
    return (
        sum(v[0] for v in values) / n,
        sum(v[1] for v in values) / n,
        sum(v[2] for v in values) / n,
    )


__all__ = ["BASELINE_SAMPLES", "BayState", "GeomagDetector", "OnBoardBay"]
