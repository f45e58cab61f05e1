import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.coords import distance_m, wgs84_to_bd09
from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, Reason, reading_key
from ingest.readings import DroneTelemetry, Stream, TimeFlag

RECEIVED = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
TOPIC = "streetwatch/site1/drone-2/telemetry"
SHENZHEN_CIVIC_CENTER = (22.5431, 114.0579)


def ctx(crs: str = "wgs84") -> DecodeContext:
    return DecodeContext("drone-2", Stream.TELEMETRY, "json", crs, TOPIC, RECEIVED)


def encode(**fields: Any) -> bytes:
    lat, lon = SHENZHEN_CIVIC_CENTER
    doc = {"ts": 1714564800.25, "lat": lat, "lon": lon, "alt_m": 120.5, **fields}
    return json.dumps({name: value for name, value in doc.items() if value is not ...}).encode()


def error_of(payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(ctx(), payload)
    return info.value


def test_full_telemetry() -> None:
    payload = encode(heading=359.9, gimbal_pitch=-90.0)
    [reading] = decode(ctx(), payload)
    assert reading.payload == DroneTelemetry(22.5431, 114.0579, 120.5, 359.9, -90.0)
    assert reading.kind == "telemetry"
    assert reading.key == reading_key(TOPIC, payload, 0)
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert reading.time_flag is TimeFlag.OK


def test_optional_fields_may_be_absent_or_null() -> None:
    [reading] = decode(ctx(), encode(heading=None))
    assert reading.payload == DroneTelemetry(22.5431, 114.0579, 120.5)


def test_bd09_drone_is_stored_in_wgs84() -> None:
    lat, lon = wgs84_to_bd09(*SHENZHEN_CIVIC_CENTER)
    [reading] = decode(ctx("bd09"), encode(lat=lat, lon=lon))
    position = (reading.payload.lat, reading.payload.lon)
    assert distance_m(position, SHENZHEN_CIVIC_CENTER) < 0.5
    assert reading.payload.alt_m == 120.5


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"", Reason.EMPTY, "empty"),
        (b"\x80", Reason.BAD_ENCODING, "byte 0x80 at offset 0"),
        (b"{", Reason.NOT_JSON, "not JSON"),
        (b"true", Reason.WRONG_TYPE, "a boolean, expected an object"),
        (encode(alt_m=...), Reason.MISSING_FIELD, "alt_m is missing"),
        (encode(lat=...), Reason.MISSING_FIELD, "lat is missing"),
        (encode(alt_m="120"), Reason.WRONG_TYPE, 'alt_m="120" is a string'),
        (encode(lon=False), Reason.WRONG_TYPE, "lon=false"),
        (encode(gimbal_pitch=[0]), Reason.WRONG_TYPE, "gimbal_pitch=[0]"),
        (encode(alt_m=10000.5), Reason.OUT_OF_RANGE, "alt_m=10000.5 is outside [-500, 10000]"),
        (encode(alt_m=-501), Reason.OUT_OF_RANGE, "alt_m=-501.0"),
        (encode(heading=-0.5), Reason.OUT_OF_RANGE, "heading=-0.5 is outside [0, 360]"),
        (encode(gimbal_pitch=190.0), Reason.OUT_OF_RANGE, "gimbal_pitch=190.0"),
        (encode(lat=-91), Reason.OUT_OF_RANGE, "lat=-91.0"),
        (b'{"ts": 0, "lat": 22.5, "lon": 114.0, "alt_m": NaN}', Reason.NOT_FINITE, "alt_m=NaN"),
        (encode(ts="noon"), Reason.BAD_TIME, "ts='noon'"),
        (encode(ts=None), Reason.BAD_TIME, "NoneType"),
    ],
)
def test_bad_input(payload: bytes, reason: Reason, detail: str) -> None:
    error = error_of(payload)
    assert error.reason is reason
    assert detail in error.detail
