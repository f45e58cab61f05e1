import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, Reason, reading_key
from ingest.readings import GeomagField, GeomagState, Stream, TimeFlag

RECEIVED = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
TOPIC = "streetwatch/site1/fire-lane-3/geomag"
CTX = DecodeContext("fire-lane-3", Stream.GEOMAG, "json", "wgs84", TOPIC, RECEIVED)


def encode(**fields: Any) -> bytes:
    doc = {"ts": "2024-05-01T20:00:00+08:00", **fields}
    return json.dumps({name: value for name, value in doc.items() if value is not ...}).encode()


def error_of(payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(CTX, payload)
    return info.value


def test_raw_field() -> None:
    payload = encode(x=12.5, y=-3.25, z=48)
    [reading] = decode(CTX, payload)
    assert reading.payload == GeomagField(12.5, -3.25, 48.0)
    assert reading.kind == "geomag_field"
    assert reading.key == reading_key(TOPIC, payload, 0)
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert reading.time_flag is TimeFlag.OK


@pytest.mark.parametrize(
    ("value", "occupied"), [(True, True), (False, False), (1, True), (0, False)]
)
def test_occupancy_state(value: object, occupied: bool) -> None:
    [reading] = decode(CTX, encode(occupied=value))
    assert reading.payload == GeomagState(occupied)
    assert reading.kind == "geomag_state"


def test_sensor_sending_both_yields_both_readings() -> None:
    payload = encode(x=1.0, y=2.0, z=3.0, occupied=True)
    field, state = decode(CTX, payload)
    assert field.payload == GeomagField(1.0, 2.0, 3.0)
    assert state.payload == GeomagState(True)
    assert (field.key, state.key) == (
        reading_key(TOPIC, payload, 0),
        reading_key(TOPIC, payload, 1),
    )


def test_epoch_time_and_future_flag() -> None:
    [reading] = decode(CTX, encode(ts=RECEIVED.timestamp() + 3600, occupied=False))
    assert reading.time_flag is TimeFlag.FUTURE


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"", Reason.EMPTY, "empty"),
        (b"\xc3\x28", Reason.BAD_ENCODING, "not UTF-8"),
        (b"x=1,y=2", Reason.NOT_JSON, "not JSON"),
        (b'[{"ts": 0, "occupied": true}]', Reason.WRONG_TYPE, "an array, expected an object"),
        (encode(), Reason.MISSING_FIELD, "x, y, z (or occupied) are missing"),
        (encode(x=1.0, y=2.0), Reason.MISSING_FIELD, "z is missing"),
        (encode(ts=..., occupied=True), Reason.MISSING_FIELD, "ts is missing"),
        (encode(x="1.0", y=2.0, z=3.0), Reason.WRONG_TYPE, 'x="1.0" is a string'),
        (encode(x=1.0, y=True, z=3.0), Reason.WRONG_TYPE, "y=true is a boolean"),
        (encode(occupied="yes"), Reason.WRONG_TYPE, 'occupied="yes" is a string'),
        (encode(occupied=1.0), Reason.WRONG_TYPE, "occupied=1.0"),
        (encode(occupied=None), Reason.WRONG_TYPE, "occupied=null"),
        (encode(occupied=2), Reason.OUT_OF_RANGE, "occupied=2 is not 0 or 1"),
        (encode(x=2000.5, y=0, z=0), Reason.OUT_OF_RANGE, "x=2000.5 is outside [-2000, 2000]"),
        (encode(x=0, y=0, z=-2001), Reason.OUT_OF_RANGE, "z=-2001.0 is outside [-2000, 2000]"),
        (b'{"ts": 0, "x": NaN, "y": 0, "z": 0}', Reason.NOT_FINITE, "x=NaN"),
        (b'{"ts": 0, "x": 0, "y": -Infinity, "z": 0}', Reason.NOT_FINITE, "y=-Infinity"),
        (encode(ts="2024-05-01 12:00", occupied=True), Reason.BAD_TIME, "has no UTC offset"),
        (encode(ts=False, occupied=True), Reason.BAD_TIME, "ts=False"),
    ],
)
def test_bad_input(payload: bytes, reason: Reason, detail: str) -> None:
    error = error_of(payload)
    assert error.reason is reason
    assert detail in error.detail
