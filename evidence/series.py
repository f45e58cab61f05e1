"""The sensor-history block of a package: `data/sensor_series.json` (each geomagnetic device's
field and occupancy, with the detector's occupancy calls) and `data/gps_track.geojson` (each GPS
or drone device's track: a line, then one point a fix).

Read lean (bench/evidence.py: an hour of two 1 Hz devices is ~7,200 rows a package): the
journal's rows as they are (`Journal.event_rows`: device, kind, event time, time flag, JSON),
one `orjson.loads` and one dict a row, each time formatted once, no `Reading` per row. The
bytes are those the `Reading`-based path wrote (tests/evidence/test_series.py compares them).
The metric block (`evidence.metric_plot`) is read only for the devices that sent a metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from math import modf
from typing import Any

import orjson

from detectors.observation import Observation
from ingest.journal import Journal

_TRACK_KINDS = frozenset({"gps", "telemetry"})
_POINT_FIELDS = ("speed_kmh", "heading", "hdop", "sats", "alt_m")


@dataclass(frozen=True, slots=True)
class SensorHistory:
    series: dict[str, Any]
    """`{"series": {device_id: {"field_ut": [...], "occupancy": [...]}}}`"""
    track: dict[str, Any]
    """A GeoJSON FeatureCollection."""
    readings: int
    """Journal rows read (every kind, snapshots included)."""
    metric_devices: tuple[str, ...]
    """Devices among them that sent a metric, in first-seen order."""

    def files(self) -> list[tuple[str, bytes, str]]:
        """(relative path, bytes, role) of what there is: the series and the track."""
        out = []
        if self.series["series"]:
            out.append(("data/sensor_series.json", _json(self.series), "sensor_series"))
        if self.track["features"]:
            out.append(("data/gps_track.geojson", _json(self.track), "gps_track"))
        return out


def read_history(
    journal: Journal,
    device_ids: Iterable[str],
    t0: datetime,
    t1: datetime,
    observations: Sequence[Observation],
    tz: tzinfo,
) -> SensorHistory:
    """The devices' history with an event time in [t0, t1], and the observations' occupancy."""
    rows = journal.event_rows(device_ids, t0, t1)
    series, track, metrics = build(rows, observations, tz)
    return SensorHistory(series, track, len(rows), metrics)


def build(
    rows: Sequence[tuple[str, str, float, str, str]],
    observations: Iterable[Observation],
    tz: tzinfo,
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """(series, track, metric devices) of `Journal.event_rows` rows, in event order."""
    loads = orjson.loads
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    tracks: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}
    metrics: dict[str, None] = {}
    utc = IsoClock(UTC).format
    fields: dict[str, list[dict[str, Any]]] = {}
    for device_id, kind, e, flag, data in rows:
        if kind == "geomag_field":
            p = loads(data)
            x, y, z = p["x"], p["y"], p["z"]
            into = fields.get(device_id)
            if into is None:
                into = fields[device_id] = _entry(series, device_id)["field_ut"]
            into.append(
                {"ts": utc(e), "x": x, "y": y, "z": z, "magnitude": (x**2 + y**2 + z**2) ** 0.5}
            )
        elif kind == "geomag_state":
            t = utc(e)
            _entry(series, device_id)["occupancy"].append(
                {"ts": t, "occupied": loads(data)["occupied"], "source": "device"}
            )
        elif kind in _TRACK_KINDS:
            tracks.setdefault(device_id, []).append((e, flag, loads(data)))
        elif kind == "metric":
            metrics[device_id] = None
    for o in observations:
        if o.kind.value == "occupancy":
            _entry(series, o.device_id)["occupancy"].append(
                {
                    "ts": o.last_seen.astimezone(UTC).isoformat(),
                    "occupied": o.state == "occupied",
                    "since": o.first_seen.astimezone(UTC).isoformat(),
                    "source": "detector",
                }
            )
    kept = {k: s for k, s in series.items() if s["field_ut"] or s["occupancy"]}
    features: list[dict[str, Any]] = []
    for device_id, points in tracks.items():
        features.extend(_track(device_id, points, utc, IsoClock(tz).format))
    return {"series": kept}, {"type": "FeatureCollection", "features": features}, tuple(metrics)


def _track(
    device_id: str,
    points: list[tuple[float, str, dict[str, Any]]],
    utc: Callable[[float], str],
    site: Callable[[float], str],
) -> list[dict[str, Any]]:
    """One device's line (or point) feature, then a point feature a fix."""
    coords = []
    features: list[dict[str, Any]] = []
    for e, flag, p in points:
        at = [p["lon"], p["lat"]]
        coords.append(at)
        props = {"device_id": device_id, "ts": {"utc": utc(e), "site": site(e)}, "time_flag": flag}
        for k in _POINT_FIELDS:
            value = p.get(k)
            if value is not None:
                props[k] = value
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": at},
                "properties": props,
            }
        )
    line = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords}
        if len(coords) > 1
        else {"type": "Point", "coordinates": coords[0]},
        "properties": {
            "device_id": device_id,
            "start": features[0]["properties"]["ts"],
            "end": features[-1]["properties"]["ts"],
            "points": len(coords),
            "crs": "WGS-84",
        },
    }
    return [line, *features]


def _entry(series: dict[str, Any], device_id: str) -> dict[str, list[dict[str, Any]]]:
    entry = series.get(device_id)
    if entry is None:
        entry = series[device_id] = {"field_ut": [], "occupancy": []}
    return entry


class IsoClock:
    """`datetime.fromtimestamp(e, tz).isoformat()` for epoch seconds `e`, the same string, with
    each minute's date, hour and offset found once (a track is thousands of fixes a minute
    apart or less). Microseconds are rounded half to even, as `fromtimestamp` rounds them. A
    minute whose offset is not whole minutes or changes inside it, and a time before 1970,
    take the plain path."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._minutes: dict[int, tuple[str, str] | None] = {}

    def format(self, e: float) -> str:
        frac, whole = modf(e)
        us = round(frac * 1e6)
        sec = int(whole)
        if us >= 1_000_000:
            sec, us = sec + 1, us - 1_000_000
        minute, second = divmod(sec, 60)
        try:
            found = self._minutes[minute]
        except KeyError:
            found = self._minutes[minute] = self._minute(minute) if e >= 0 else None
        if found is None:
            return datetime.fromtimestamp(e, self.tz).isoformat()
        prefix, offset = found
        if us:
            return f"{prefix}{second:02d}.{us:06d}{offset}"
        return f"{prefix}{second:02d}{offset}"

    def _minute(self, minute: int) -> tuple[str, str] | None:
        start = datetime.fromtimestamp(minute * 60, self.tz)
        end = datetime.fromtimestamp(minute * 60 + 59, self.tz)
        text = start.isoformat()  # YYYY-MM-DDTHH:MM:00+HH:MM
        if len(text) != 25 or start.second != 0 or start.utcoffset() != end.utcoffset():
            return None
        return text[:17], text[19:]


def _json(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
