"""The lean sensor-history read (`evidence.series`) writes the bytes the `Reading`-based path
wrote: the reference below is that path (every row a `Reading`, `Reading.event_ts`,
`package.both_times`), run on the same real SQLite journal."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from detectors.observation import Observation, ObservationKind
from evidence.package import both_times
from evidence.series import IsoClock, read_history
from ingest.journal import Journal
from ingest.readings import (
    DroneTelemetry,
    GeomagField,
    GeomagState,
    GpsFix,
    Metric,
    Reading,
    Snapshot,
    Stream,
    TimeFlag,
)

START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Europe/Berlin moves to summer time at 01:00


def reference(
    readings: list[Reading], observations: list[Observation], tz: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    series: dict[str, Any] = {}
    tracks: dict[str, list[Reading]] = {}
    for r in readings:
        p = r.payload
        entry = series.setdefault(r.device_id, {"field_ut": [], "occupancy": []})
        t = r.event_ts.astimezone(UTC).isoformat()
        if isinstance(p, GeomagField):
            mag = (p.x**2 + p.y**2 + p.z**2) ** 0.5
            entry["field_ut"].append({"ts": t, "x": p.x, "y": p.y, "z": p.z, "magnitude": mag})
        elif isinstance(p, GeomagState):
            entry["occupancy"].append({"ts": t, "occupied": p.occupied, "source": "device"})
        elif isinstance(p, GpsFix | DroneTelemetry):
            tracks.setdefault(r.device_id, []).append(r)
    for o in observations:
        if o.kind.value == "occupancy":
            entry = series.setdefault(o.device_id, {"field_ut": [], "occupancy": []})
            entry["occupancy"].append(
                {
                    "ts": o.last_seen.astimezone(UTC).isoformat(),
                    "occupied": o.state == "occupied",
                    "since": o.first_seen.astimezone(UTC).isoformat(),
                    "source": "detector",
                }
            )
    series = {k: s for k, s in series.items() if s["field_ut"] or s["occupancy"]}
    features: list[dict[str, Any]] = []
    for device_id, points in tracks.items():
        coords = [[r.payload.lon, r.payload.lat] for r in points]  # type: ignore[union-attr]
        times = [both_times(r.event_ts, tz) for r in points]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords}
                if len(coords) > 1
                else {"type": "Point", "coordinates": coords[0]},
                "properties": {
                    "device_id": device_id,
                    "start": times[0],
                    "end": times[-1],
                    "points": len(coords),
                    "crs": "WGS-84",
                },
            }
        )
        for r, when in zip(points, times, strict=True):
            p = r.payload
            props = {"device_id": device_id, "ts": when, "time_flag": r.time_flag.value}
            props.update(
                {
                    k: getattr(p, k)
                    for k in ("speed_kmh", "heading", "hdop", "sats", "alt_m")
                    if getattr(p, k, None) is not None
                }
            )
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},  # type: ignore[union-attr]
                    "properties": props,
                }
            )
    return {"series": series}, {"type": "FeatureCollection", "features": features}


def _reading(n: int, device: str, stream: Stream, payload: Any, **kw: Any) -> Reading:
    at = START + timedelta(seconds=n * 1.37, microseconds=n * 7)
    return Reading(
        f"{device}-{n}",
        device,
        stream,
        kw.get("device_ts", at),
        kw.get("received_ts", at + timedelta(milliseconds=250)),
        kw.get("flag", TimeFlag.OK),
        payload,
    )


def _fill(journal: Journal) -> None:
    rows = []
    for n in range(0, 3000, 1):
        m = n % 9
        if m == 0:
            rows.append(_reading(n, "mag-1", Stream.GEOMAG, GeomagField(20, -5.5, 40.0 + n % 7)))
        elif m == 1:
            rows.append(_reading(n, "mag-1", Stream.GEOMAG, GeomagState(n % 2 == 0)))
        elif m == 2:
            fix = GpsFix(31.2 + n * 1e-6, 121.4, speed_kmh=None if n % 4 else 12.5, sats=n % 13)
            rows.append(_reading(n, "gps-1", Stream.GPS, fix))
        elif m == 3:  # the device clock was off: its receive time is the event time
            fix = GpsFix(31.3, 121.5 + n * 1e-6, heading=90.0, hdop=0.8)
            rows.append(_reading(n, "gps-1", Stream.GPS, fix, flag=TimeFlag.FUTURE))
        elif m == 4:
            drone = DroneTelemetry(31.1, 121.3, 80.5, heading=None if n % 2 else 45.0)
            rows.append(_reading(n, "drone-1", Stream.TELEMETRY, drone, device_ts=None))
        elif m == 5:
            rows.append(_reading(n, "bin-1", Stream.METRICS, Metric("fill_pct", n % 100, "%")))
        elif m == 6:
            rows.append(_reading(n, "cam-9", Stream.SNAPSHOT, Snapshot(b"\xff\xd8jpeg", 4, 3)))
        elif m == 7:
            rows.append(_reading(n, "mag-2", Stream.GEOMAG, GeomagField(-1.25, 0, 3)))
        elif n == 8:  # one fix only: a point, not a line
            rows.append(_reading(n, "gps-2", Stream.GPS, GpsFix(31.0, 121.0)))
    journal.write(rows)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    j = Journal(Path(tmp_path_factory.mktemp("series")) / "journal.sqlite")
    _fill(j)
    return j


DEVICES = ["mag-1", "mag-2", "gps-1", "gps-2", "drone-1", "bin-1", "cam-9"]


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Shanghai"])
@pytest.mark.parametrize("window_s", [(0, 5000), (600, 1900), (3.0, 3.0)])
def test_same_bytes_as_the_reading_path(journal: Journal, tz: str, window_s: tuple) -> None:
    zone = ZoneInfo(tz)
    t0 = START + timedelta(seconds=window_s[0])
    t1 = START + timedelta(seconds=window_s[0] + window_s[1])
    bay = Observation(ObservationKind.OCCUPANCY, "mag-1", "bay", "b1", START, t1, state="occupied")
    other = Observation(ObservationKind.OCCUPANCY, "mag-3", "bay", "b3", START, t0, state="vacant")
    observations = [bay, other]
    readings = journal.readings_between(DEVICES, t0, t1)
    assert readings, "the window holds readings"
    want_series, want_track = reference(readings, observations, zone)

    history = read_history(journal, DEVICES, t0, t1, observations, zone)

    assert history.readings == len(readings)
    assert orjson.dumps(history.series, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        want_series, option=orjson.OPT_SORT_KEYS
    )
    assert orjson.dumps(history.track, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        want_track, option=orjson.OPT_SORT_KEYS
    )
    want = {}
    if want_series["series"]:
        want["data/sensor_series.json"] = orjson.dumps(want_series, option=orjson.OPT_SORT_KEYS)
    if want_track["features"]:
        want["data/gps_track.geojson"] = orjson.dumps(want_track, option=orjson.OPT_SORT_KEYS)
    assert {rel: data for rel, data, _ in history.files()} == want
    metric = [r.device_id for r in readings if isinstance(r.payload, Metric)]
    assert history.metric_devices == tuple(dict.fromkeys(metric))


def test_the_wide_window_holds_every_kind(journal: Journal) -> None:
    zone = ZoneInfo("Europe/Berlin")
    history = read_history(journal, DEVICES, START, START + timedelta(hours=2), [], zone)
    assert set(history.series["series"]) == {"mag-1", "mag-2"}
    lines = [f for f in history.track["features"] if f["properties"].get("points")]
    assert {f["properties"]["device_id"]: f["geometry"]["type"] for f in lines} == {
        "gps-1": "LineString",
        "gps-2": "Point",
        "drone-1": "LineString",
    }
    points = [f["properties"] for f in history.track["features"] if "ts" in f["properties"]]
    offsets = {p["ts"]["site"][-6:] for p in points}
    assert offsets >= {"+01:00", "+02:00"}  # the track crosses the change to summer time
    assert history.metric_devices == ("bin-1",)


def test_nothing_to_show(journal: Journal) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    later = START + timedelta(days=1)
    history = read_history(journal, ["mag-1", "gps-1"], later, later, [], zone)
    assert (history.readings, history.files(), history.metric_devices) == (0, [], ())
    assert read_history(journal, [], START, later, [], zone).readings == 0


@pytest.mark.parametrize(
    "tz", ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe"]
)
def test_iso_clock_writes_what_datetime_writes(tz: str) -> None:
    zone = UTC if tz == "UTC" else ZoneInfo(tz)
    clock = IsoClock(zone)
    rng = random.Random(tz)
    values = [rng.uniform(-1e9, 4e9) for _ in range(3000)]
    values += [float(rng.randrange(0, 2**31)) for _ in range(1000)]
    # halves of a microsecond (rounded to even), and a fraction that rounds up to a whole second
    values += [1.7e9 + k + f for k in range(200) for f in (0.5e-6, 1.5e-6, 0.9999996, 0.25)]
    base = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # every half hour of a year of changes
    values += [base + q * 1800 + d for q in range(365 * 48) for d in (0, 59.5)]
    for e in values:
        assert clock.format(e) == datetime.fromtimestamp(e, zone).isoformat(), e
