"""A vehicle terminal's alarm flags and named inputs (JT/T 808: overspeed, emergency, a muck
truck's `dump_raised`, ...) → `vehicle_signal` observations rules can name by state.

While a signal is on, each fix re-reports it (at most once a second) with a growing dwell: state
= the signal's name, subject id `<device>/<signal>`. When it goes off, one `clear` observation
closes the situation. Signals come from the GPS reading's attributes (`alarm`, `inputs`).

A named input on while the vehicle is off its approved route is also the signal
`<input>_off_route` (a muck truck's `dump_raised_off_route`: dumping along the way), so a rule
about one vehicle's input and its route is one clause, never a pairing of two vehicles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from detectors.observation import GeoPoint, Observation, ObservationKind

CLEAR = "clear"
UPDATE_EVERY_S = 1.0


class SignalTracker:
    """The signals of one vehicle: since when each has been on, and when last reported."""

    def __init__(self, device_id: str, stats: Counter[str]) -> None:
        self.device_id = device_id
        self.stats = stats
        self._on: dict[str, list[datetime]] = {}
        """signal -> [first_seen, last_seen, last_emitted]"""

    def process(
        self,
        ts: datetime,
        attributes: Mapping[str, Any] | None,
        where: GeoPoint | None,
        off_route: bool = False,
    ) -> list[Observation]:
        if not attributes:
            return []
        inputs = list(attributes.get("inputs") or ())
        off = [f"{name}_off_route" for name in inputs] if off_route else []
        active = dict.fromkeys([*(attributes.get("alarm") or ()), *inputs, *off])
        out = []
        for signal in active:
            times = self._on.get(signal)
            if times is None:
                self._on[signal] = [ts, ts, ts]
                self.stats["vehicle_signals_on"] += 1
                out.append(self._obs(signal, signal, ts, ts, where, attributes))
                continue
            if ts <= times[1]:
                continue
            times[1] = ts
            if (ts - times[2]).total_seconds() >= UPDATE_EVERY_S:
                times[2] = ts
                out.append(self._obs(signal, signal, times[0], ts, where, attributes))
        for signal in [s for s in self._on if s not in active]:
            first, last, _ = self._on.pop(signal)
            out.append(self._obs(signal, CLEAR, first, max(last, ts), where, attributes))
        return out

    def _obs(
        self,
        signal: str,
        state: str,
        first: datetime,
        last: datetime,
        where: GeoPoint | None,
        attributes: Mapping[str, Any],
    ) -> Observation:
        return Observation(
            kind=ObservationKind.VEHICLE_SIGNAL,
            device_id=self.device_id,
            subject="vehicle",
            subject_id=f"{self.device_id}/{signal}",
            first_seen=first,
            last_seen=last,
            state=state,
            location=where,
            attributes={
                "signal": signal,
                **{k: attributes[k] for k in ("status", "load", "mileage_km") if k in attributes},
            },
        )
