"""The telemetry written for the drone footage: what the real decoder makes of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from detectors.geofence import LocalProjection
from ingest.config import load_config
from ingest.decoders import decode
from ingest.readings import DroneTelemetry, TimeFlag
from ingest.registry import DeviceRegistry
from streetwatch.scenario_drone import FLIGHTS, flight_of, footage_telemetry
from tests.conftest import REPO

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def test_the_car_park_flight_decodes_at_5_hz_and_loops_with_the_clip() -> None:
    config = load_config(REPO / "devices.yaml")
    assert [d.id for d in config.devices if flight_of(d) is not None] == ["drone-02"]
    messages = footage_telemetry(config, duration_s=30, start=START)
    assert messages == footage_telemetry(config, duration_s=30, start=START)
    assert len(messages) == 151 and {m.topic for m in messages} == {
        "streetwatch/demo-street/drone-02/telemetry"
    }
    registry = DeviceRegistry(config)
    readings = []
    for message in messages:
        route = registry.route(message.topic)
        received = START + timedelta(seconds=message.at_s + 0.05)
        ctx = route.context(message.topic, received, (), config.ingest)
        (reading,) = decode(ctx, message.payload)
        assert reading.time_flag is TimeFlag.OK
        assert reading.device_ts == START + timedelta(seconds=message.at_s)
        readings.append(reading.payload)
    assert all(isinstance(r, DroneTelemetry) for r in readings)
    flight = FLIGHTS["drone-car-park.mp4"]
    first, later = readings[0], readings[50]  # 10 s on: drifted 1 m to the north-west
    assert (first.alt_m, first.heading, first.gimbal_pitch) == (25.0, 30.0, -16.0)
    moved = LocalProjection(first.lon, first.lat).xy(later.lon, later.lat)
    assert moved == pytest.approx((-0.866, 0.5), abs=0.02)
    # the clip is 20.02 s long: the pose starts over with it
    again = next(i for i, m in enumerate(messages) if m.at_s >= flight.period_s)
    assert readings[again].lat == pytest.approx(first.lat, abs=1e-6)
