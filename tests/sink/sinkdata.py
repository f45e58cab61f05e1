"""Records for the sink tests: journals with every reading kind, observations, case stores."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig, Timeseries
from ingest.journal import Journal
from ingest.readings import (
    DroneTelemetry,
    GeomagField,
    GeomagState,
    GpsFix,
    Reading,
    Snapshot,
    Stream,
    TimeFlag,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + b"x" * 300 + b"\xff\xd9"


def site(**timeseries: object) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "sink-test"},
            "timeseries": {"retry": {"min_delay_s": 0.05, "max_delay_s": 0.5}, **timeseries},
            "devices": [
                {"id": "gps-1", "kind": "gps"},
                {"id": "gps-2", "kind": "gps"},
                {"id": "mag-1", "kind": "geomagnetic", "bay": "B-01"},
                {"id": "drone-1", "kind": "drone"},
                {"id": "cam-1", "kind": "camera"},
            ],
        }
    )


def settings(**values: object) -> Timeseries:
    return Timeseries.model_validate({"retry": {"min_delay_s": 0.05, "max_delay_s": 0.5}, **values})


def gps(i: int, device: str = "gps-1", prefix: str = "g") -> Reading:
    ts = T0 + timedelta(seconds=i)
    return Reading(
        key=f"{prefix}{i:08d}:0",
        device_id=device,
        stream=Stream.GPS,
        device_ts=ts,
        received_ts=ts + timedelta(milliseconds=120),
        time_flag=TimeFlag.OK,
        payload=GpsFix(
            lat=31.2 + i * 1e-5, lon=121.4, speed_kmh=36.0, heading=0.0, hdop=0.9, sats=9
        ),
    )


def every_kind() -> list[Reading]:
    """One reading of each kind (plus a second fix, so the distance has a step)."""
    late = T0 + timedelta(days=3)
    r = [gps(0), gps(10)]
    r.append(
        Reading("f:0", "mag-1", Stream.GEOMAG, T0, T0, TimeFlag.OK, GeomagField(12.5, -3.0, 40.25))
    )
    r.append(
        Reading("s:0", "mag-1", Stream.GEOMAG, T0, T0, TimeFlag.OK, GeomagState(occupied=True))
    )
    r.append(
        Reading(
            "s:1",
            "mag-1",
            Stream.GEOMAG,
            T0 + timedelta(minutes=20),
            T0 + timedelta(minutes=20),
            TimeFlag.OK,
            GeomagState(occupied=False),
        )
    )
    r.append(
        Reading(
            "t:0",
            "drone-1",
            Stream.TELEMETRY,
            late,  # flagged: the row's time falls back to the receive time
            T0,
            TimeFlag.FUTURE,
            DroneTelemetry(31.2, 121.4, 80.0, heading=90.0, gimbal_pitch=-45.0),
        )
    )
    r.append(
        Reading("p:0", "cam-1", Stream.SNAPSHOT, T0, T0, TimeFlag.OK, Snapshot(JPEG, 640, 480))
    )
    return r


def observation(i: int, last_s: float = 5.0) -> Observation:
    return Observation(
        kind=ObservationKind.OCCUPANCY,
        device_id="mag-1",
        subject="bay",
        subject_id="B-01",
        first_seen=T0 + timedelta(seconds=i),
        last_seen=T0 + timedelta(seconds=i + last_s),
        zone_id="fire-lane-1",
        zone_kind="fire_lane",
        state="occupied",
        location=GeoPoint(121.4, 31.2),
        attributes={"deviation_ut": 42.5},
    )


CASE_EVENTS = """
CREATE TABLE IF NOT EXISTS case_events (
    seq     INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    event   TEXT NOT NULL,
    at      REAL NOT NULL,
    data    TEXT NOT NULL
)
"""


def case_store(path: Path, events: list[tuple[str, str, float, dict | str]]) -> Path:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(CASE_EVENTS)
    db.executemany(
        "INSERT INTO case_events (case_id, event, at, data) VALUES (?, ?, ?, ?)",
        [(c, e, at, d if isinstance(d, str) else json.dumps(d)) for c, e, at, d in events],
    )
    db.commit()
    db.close()
    return path


def journal_with(path: Path, readings: list[Reading]) -> Journal:
    journal = Journal(path, synchronous="NORMAL")
    journal.write(readings)
    return journal


def raw_reading(
    path: Path, key: str, kind: str, data: str, received: float, device_ts: float | None = None
) -> None:
    """A journal row written past the decoders, as a damaged or foreign journal could hold."""
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO readings (key, device_id, stream, kind, device_ts, received_ts, time_flag,"
        " data) VALUES (?, 'gps-1', 'gps', ?, ?, ?, 'ok', ?)",
        (key, kind, device_ts, received, data),
    )
    db.commit()
    db.close()
