"""SensorDetectors: every sensor reading of the site in, Observations out.

Routes each Reading to the detector of its device: raw geomagnetic fields to the occupancy state
machine, on-board occupancy decisions straight through, GPS fixes (and drone positions) to the
fix filters, geofences, speed and route checks. Event time is the reading's `event_ts`.
`tick(now)` lets time pass: stale devices and dwell inside geofences. `stats` counts what
happened, including every rejected fix by reason.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from detectors.coverage import CoverageDetector
from detectors.geomag import GeomagDetector, OnBoardBay
from detectors.gps import GpsDetector
from detectors.gps_filters import Candidate
from detectors.metrics import metric_observation
from detectors.observation import GeoPoint, Observation
from detectors.vehicle_signals import SignalTracker
from ingest.config import DeviceKind, SiteConfig
from ingest.readings import DroneTelemetry, GeomagField, GeomagState, GpsFix, Metric, Reading

log = logging.getLogger(__name__)
STATE_VERSION = 1


class SensorDetectors:
    """All sensor detectors of one site, keyed by device id."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.stats: Counter[str] = Counter()
        self._geomag: dict[str, GeomagDetector] = {}
        self._on_board: dict[str, OnBoardBay] = {}
        self._gps: dict[str, GpsDetector] = {}
        self._coverage: dict[str, CoverageDetector] = {
            d.id: CoverageDetector(d.id, d.sweeping, config.site.tz, self.stats)
            for d in config.devices
            if d.kind is DeviceKind.GPS and d.sweeping is not None
        }
        """Sanitation vehicles' segment coverage, fed the fixes the GPS filters accept."""
        self._signals: dict[str, SignalTracker] = {}
        """Vehicle terminals' alarm flags and named inputs (JT/T 808)."""

    def process(self, reading: Reading) -> list[Observation]:
        """The observations one reading causes (often none). Never raises on odd input."""
        self.stats["readings"] += 1
        device = self.config.device(reading.device_id)
        if device is None:
            self.stats["unknown_device"] += 1
            return []
        payload = reading.payload
        ts = reading.event_ts
        if isinstance(payload, GeomagField) and device.kind is DeviceKind.GEOMAGNETIC:
            detector = self._geomag.get(device.id)
            if detector is None:
                detector = self._geomag[device.id] = GeomagDetector(device, self.stats)
            out = detector.process(ts, (payload.x, payload.y, payload.z), reading.received_ts)
        elif isinstance(payload, GeomagState) and device.kind is DeviceKind.GEOMAGNETIC:
            bay = self._on_board.get(device.id)
            if bay is None:
                bay = self._on_board[device.id] = OnBoardBay(device, self.stats)
            out = bay.process(ts, payload.occupied, reading.received_ts)
        elif isinstance(payload, GpsFix) and device.kind is DeviceKind.GPS:
            vehicle = self._vehicle(device.id, "vehicle")
            fix = Candidate(
                ts=ts,
                lat=payload.lat,
                lon=payload.lon,
                valid=payload.valid,
                hdop=payload.hdop,
                sats=payload.sats,
                received_ts=reading.received_ts,
                time_flag=reading.time_flag,
            )
            out = vehicle.process(fix, payload.speed_kmh)
            if payload.attributes:
                out += self._signals_of(device.id).process(
                    ts, payload.attributes, GeoPoint(payload.lon, payload.lat), vehicle.off_route
                )
            coverage = self._coverage.get(device.id)
            if coverage is not None and vehicle.last_fix is fix:
                out += coverage.process(ts, fix.lon, fix.lat, payload.speed_kmh)
        elif isinstance(payload, Metric) and device.kind is DeviceKind.SENSOR:
            out = [metric_observation(device, ts, payload)]
        elif isinstance(payload, DroneTelemetry) and device.kind is DeviceKind.DRONE:
            out = self._vehicle(device.id, "drone").process(
                Candidate(
                    ts=ts,
                    lat=payload.lat,
                    lon=payload.lon,
                    received_ts=reading.received_ts,
                    time_flag=reading.time_flag,
                )
            )
        else:
            self.stats["not_for_sensors"] += 1
            return []
        self._count(out)
        return out

    def tick(self, now: datetime) -> list[Observation]:
        """Time passing without readings: stale devices, dwell updates inside geofences."""
        out: list[Observation] = []
        for detector in (*self._geomag.values(), *self._on_board.values(), *self._gps.values()):
            out += detector.tick(now)
        for coverage in self._coverage.values():
            out += coverage.tick(now)
        self._count(out)
        return out

    def recalibrate(self, device_id: str) -> None:
        """Re-learn a raw geomagnetic sensor's empty-bay field from its next readings.

        Call it when the bay is known to be empty. If the bay was occupied, the next `process` or
        `tick` reports the stay ended and the bay vacant. Unknown or non-geomagnetic devices raise
        KeyError/ValueError with the reason.
        """
        device = self.config.device(device_id)
        if device is None:
            raise KeyError(f"no device {device_id!r} in the site config")
        if device.kind is not DeviceKind.GEOMAGNETIC:
            raise ValueError(f"device {device_id!r} is a {device.kind.value}, not geomagnetic")
        if device_id in self._on_board:
            self._on_board[device_id].recalibrate()
            return
        detector = self._geomag.get(device_id)
        if detector is None:
            detector = self._geomag[device_id] = GeomagDetector(device, self.stats)
        detector.recalibrate()

    def snapshot(self) -> dict[str, Any]:
        """The bays' learnt baselines and states and the vehicles' open situations (zones,
        route, speed, health) with their filters, JSON-ready, to carry across a restart."""
        bays = {
            device_id: bay.snapshot()
            for device_id, bay in (*self._geomag.items(), *self._on_board.items())
        }
        vehicles = {device_id: gps.snapshot() for device_id, gps in self._gps.items()}
        coverage = {device_id: c.snapshot() for device_id, c in self._coverage.items()}
        return {"version": STATE_VERSION, "bays": bays, "vehicles": vehicles, "coverage": coverage}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`; devices gone from the config or of another kind are skipped
        (counted as `restore_skipped`)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"sensor state version {data.get('version')!r}, expected 1")
        for device_id, bay_data in dict(data.get("bays") or {}).items():
            device = self.config.device(device_id)
            if device is None or device.kind is not DeviceKind.GEOMAGNETIC:
                self.stats["restore_skipped"] += 1
                continue
            if "baseline_ut" in bay_data:
                bay: GeomagDetector | OnBoardBay = GeomagDetector(device, self.stats)
                self._geomag[device_id] = bay
            else:
                bay = self._on_board[device_id] = OnBoardBay(device, self.stats)
            bay.restore(bay_data)
        for device_id, vehicle in dict(data.get("vehicles") or {}).items():
            device = self.config.device(device_id)
            if device is None or device.kind not in (DeviceKind.GPS, DeviceKind.DRONE):
                self.stats["restore_skipped"] += 1
                continue
            detector = GpsDetector(device, self.stats, str(vehicle.get("subject", "vehicle")))
            detector.restore(vehicle)
            self._gps[device_id] = detector
        for device_id, coverage in dict(data.get("coverage") or {}).items():
            if device_id in self._coverage:
                self._coverage[device_id].restore(coverage)

    def save(self, path: Path) -> None:
        """Write `snapshot()` atomically (temporary file, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(self.snapshot(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        """Restore from `save`'s file; False (and a logged reason) when it is missing or bad,
        and the bays then learn their baselines afresh."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.restore(data)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("sensor state %s not restored: %s", path, exc)
            self.stats["restore_failed"] += 1
            return False
        return True

    def bay_state(self, device_id: str) -> str | None:
        """Current state of a geomagnetic device's bay (`occupied`/`vacant`), None before data."""
        bay = self._on_board.get(device_id) or self._geomag.get(device_id)
        return None if bay is None or not bay.known else bay.state.value

    def _signals_of(self, device_id: str) -> SignalTracker:
        tracker = self._signals.get(device_id)
        if tracker is None:
            tracker = self._signals[device_id] = SignalTracker(device_id, self.stats)
        return tracker

    def _vehicle(self, device_id: str, subject: str) -> GpsDetector:
        detector = self._gps.get(device_id)
        if detector is None:
            device = self.config.device(device_id)
            assert device is not None
            detector = self._gps[device_id] = GpsDetector(device, self.stats, subject)
        return detector

    def _count(self, observations: list[Observation]) -> None:
        for obs in observations:
            self.stats[f"observations.{obs.kind.value}"] += 1


__all__ = ["SensorDetectors"]
