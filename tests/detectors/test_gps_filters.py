"""GPS fix filters: each rejects what it should, counted by reason, and good fixes pass."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.gps_filters import REANCHOR_FIXES, Candidate, FixFilter, Rejection
from detectors.sensors import SensorDetectors
from ingest.config import GpsFilters, load_config
from ingest.decoders import DecodeContext, decode
from ingest.readings import Stream, TimeFlag
from streetwatch.scenario import nmea_sentence
from tests.conftest import REPO

T0 = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
LAT, LON = 31.1953, 121.4373
M_PER_DEG_LAT = 111_195.0


def fix(t: float, north_m: float = 0.0, **kw: object) -> Candidate:
    ts = T0 + timedelta(seconds=t)
    base: dict[str, object] = {
        "ts": ts,
        "lat": LAT + north_m / M_PER_DEG_LAT,
        "lon": LON,
        "hdop": 0.9,
        "sats": 14,
        "received_ts": ts + timedelta(seconds=0.5),
    }
    base.update(kw)
    return Candidate(**base)  # type: ignore[arg-type]


def started() -> FixFilter:
    f = FixFilter(GpsFilters())
    assert f.check(fix(0)) is None
    return f


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (fix(1, valid=False), Rejection.INVALID),
        (fix(1, lat=math.nan), Rejection.INVALID),
        (fix(1, lat=95.0), Rejection.INVALID),
        (fix(1, lat=0.0, lon=0.0), Rejection.ZERO),
        (fix(1, time_flag=TimeFlag.FUTURE), Rejection.FUTURE),
        (fix(60, received_ts=T0 + timedelta(seconds=1)), Rejection.FUTURE),
        (fix(1, time_flag=TimeFlag.PAST), Rejection.PAST),
        (fix(-5), Rejection.OUT_OF_ORDER),
        (fix(0, north_m=3.0), Rejection.DUPLICATE),
        (fix(1, hdop=7.5), Rejection.HDOP),
        (fix(1, sats=3), Rejection.SATS),
        (fix(1, north_m=200.0), Rejection.JUMP),  # 720 km/h
    ],
)
def test_each_filter_rejects_with_its_reason(bad: Candidate, reason: Rejection) -> None:
    f = started()
    assert f.check(bad) is reason
    assert f.last is not None and f.last.ts == T0  # the last good fix stays the reference
    assert f.check(fix(2, north_m=10.0)) is None  # and a good one after it still passes


def test_thresholds_come_from_the_settings() -> None:
    f = FixFilter(GpsFilters(max_hdop=None, min_sats=None, max_speed_kmh=1000))
    assert f.check(fix(0)) is None
    assert f.check(fix(1, hdop=30.0, sats=1, north_m=200.0)) is None


def test_missing_accuracy_fields_are_not_held_against_a_fix() -> None:
    f = started()
    assert f.check(fix(1, hdop=None, sats=None, north_m=5.0)) is None


def test_a_run_of_consistent_jumps_reanchors_the_filter() -> None:
    """A receiver back from a tunnel 2 km further on is believed after a few consistent fixes."""
    f = started()
    results = [f.check(fix(10 + i, north_m=2000.0 + 10 * i)) for i in range(REANCHOR_FIXES + 1)]
    assert results[: REANCHOR_FIXES - 1] == [Rejection.JUMP] * (REANCHOR_FIXES - 1)
    assert results[REANCHOR_FIXES - 1 :] == [None, None]
    assert f.reanchored == 1


def test_isolated_outliers_never_reanchor() -> None:
    f = started()
    for i in range(1, 30):
        outlier = i % 2 == 0
        result = f.check(fix(i, north_m=(5000.0 if i % 4 == 0 else -5000.0) if outlier else 8 * i))
        assert (result is Rejection.JUMP) if outlier else (result is None)
    assert f.reanchored == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 30.0), st.floats(0.0, 27.0)), min_size=1, max_size=80))
def test_a_plausible_track_passes_whole(steps: list[tuple[float, float]]) -> None:
    """Fixes 0.5-30 s apart at up to 97 km/h (27 m/s), good accuracy: nothing is dropped."""
    f = started()
    t = north = 0.0
    for dt, speed in steps:
        t += dt
        north += speed * dt
        assert f.check(fix(t, north_m=north)) is None


def test_nmea_fixes_flagged_void_are_rejected_as_invalid() -> None:
    """An RMC with status V (and GGA quality 0) but a position: decoded, then filtered out."""
    detectors = SensorDetectors(load_config(REPO / "devices.yaml"))
    received = datetime(2025, 5, 1, 2, 0, 1, tzinfo=UTC)
    for status, quality in (("V", 0), ("A", 1)):
        body_rmc = f"GNRMC,020000.00,{status},3111.71800,N,12126.23800,E,10.00,90.0,010525,,,A"
        body_gga = f"GNGGA,020000.00,3111.71800,N,12126.23800,E,{quality},12,0.9,4.0,M,9.6,M,,"
        payload = f"{nmea_sentence(body_rmc)}\r\n{nmea_sentence(body_gga)}\r\n".encode()
        ctx = DecodeContext(
            device_id="gps-muck-07",
            stream=Stream.GPS,
            fmt="nmea",
            crs="wgs84",
            topic="streetwatch/demo-street/gps-muck-07/gps",
            received_ts=received,
        )
        (reading,) = decode(ctx, payload)
        assert reading.payload.valid is (status == "A")  # type: ignore[union-attr]
        detectors.process(reading)
    assert detectors.stats["gps_rejected.invalid"] == 1
    assert detectors.stats["gps_accepted"] == 1
