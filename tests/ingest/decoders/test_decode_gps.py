import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.coords import distance_m, wgs84_to_bd09, wgs84_to_gcj02
from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError, PartialDecode, Reason, reading_key
from ingest.readings import GpsFix, Stream, TimeFlag

RECEIVED = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
TOPIC = "streetwatch/site1/truck-7/gps"


def ctx(crs: str = "wgs84") -> DecodeContext:
    return DecodeContext("truck-7", Stream.GPS, "json", crs, TOPIC, RECEIVED)


def fix(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"ts": "2024-05-01T12:00:00Z", "lat": 31.2304, "lon": 121.4737}
    base.update(fields)
    return {name: value for name, value in base.items() if value is not ...}


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reason_of(payload: bytes, context: DecodeContext | None = None) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(context or ctx(), payload)
    return info.value


def test_full_fix() -> None:
    payload = encode(fix(speed_kmh=32.5, heading=271.0, hdop=0.8, sats=14))
    [reading] = decode(ctx(), payload)
    assert reading.payload == GpsFix(31.2304, 121.4737, 32.5, 271.0, 0.8, 14, True, "json")
    assert reading.key == reading_key(TOPIC, payload, 0)
    assert reading.device_id == "truck-7"
    assert reading.stream is Stream.GPS
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert reading.received_ts == RECEIVED
    assert reading.time_flag is TimeFlag.OK
    assert reading.kind == "gps"


def test_minimal_fix_with_epoch_ms_and_nulls() -> None:
    payload = encode(fix(ts=1714564800000, speed_kmh=None, sats=None))
    [reading] = decode(ctx(), payload)
    assert reading.payload == GpsFix(31.2304, 121.4737)
    assert reading.device_ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_integer_coordinates_are_numbers() -> None:
    [reading] = decode(ctx(), encode(fix(lat=31, lon=121, sats=0)))
    assert reading.payload.lat == 31.0
    assert reading.payload.sats == 0


def test_array_gives_one_reading_per_fix_with_distinct_keys() -> None:
    payload = encode([fix(ts=1714564800), fix(ts=1714564801), fix(ts=1714564802)])
    readings = decode(ctx(), payload)
    assert [r.key for r in readings] == [reading_key(TOPIC, payload, i) for i in range(3)]
    assert [r.device_ts.second for r in readings if r.device_ts] == [0, 1, 2]


def test_redelivery_gives_the_same_keys() -> None:
    payload = encode(fix())
    assert decode(ctx(), payload)[0].key == decode(ctx(), payload)[0].key


def test_utf8_bom_is_tolerated() -> None:
    assert decode(ctx(), b"\xef\xbb\xbf" + encode(fix()))


@pytest.mark.parametrize(
    ("ts", "flag"),
    [("2024-05-01T13:00:00Z", TimeFlag.FUTURE), ("2023-01-01T00:00:00Z", TimeFlag.PAST)],
)
def test_implausible_device_time_is_flagged_not_rejected(ts: str, flag: TimeFlag) -> None:
    [reading] = decode(ctx(), encode(fix(ts=ts)))
    assert reading.time_flag is flag
    assert reading.event_ts == RECEIVED


def test_gcj02_and_bd09_devices_are_stored_in_wgs84() -> None:
    truth = (31.2304, 121.4737)
    for crs, convert in (("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)):
        lat, lon = convert(*truth)
        [reading] = decode(ctx(crs), encode(fix(lat=lat, lon=lon)))
        assert distance_m(truth, (reading.payload.lat, reading.payload.lon)) < 0.5


def test_unknown_crs_is_reported() -> None:
    assert reason_of(encode(fix()), ctx("epsg:3857")).reason is Reason.UNKNOWN_FORMAT


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.EMPTY),
        (b"  \r\n", Reason.EMPTY),
        (b"[]", Reason.EMPTY),
        (b"\xff\xfe{}", Reason.BAD_ENCODING),
        (
            '{"ts": "2024-05-01T12:00:00Z", "lat": 31.2, "lon": 121.4}'.encode("utf-16"),
            Reason.BAD_ENCODING,
        ),
        (b"{'lat': 1}", Reason.NOT_JSON),
        (b'{"lat": 31.2,', Reason.NOT_JSON),
        (b"lat=31.2,lon=121.4", Reason.NOT_JSON),
        (b"[" * 100_000, Reason.NOT_JSON),
        (b'{"ts": 1, "lat": ' + b"9" * 5000 + b', "lon": 1}', Reason.NOT_JSON),
        (b"31.2", Reason.WRONG_TYPE),
        (b'"fix"', Reason.WRONG_TYPE),
        (b"null", Reason.WRONG_TYPE),
        (b"[1, 2]", Reason.WRONG_TYPE),
    ],
)
def test_bad_payloads(payload: bytes, reason: Reason) -> None:
    assert reason_of(payload).reason is reason


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({"lat": ...}, Reason.MISSING_FIELD, "lat is missing"),
        ({"lon": ...}, Reason.MISSING_FIELD, "lon is missing"),
        ({"ts": ...}, Reason.MISSING_FIELD, "ts is missing"),
        ({"lat": "31.2"}, Reason.WRONG_TYPE, 'lat="31.2" is a string, expected a number'),
        ({"lat": True}, Reason.WRONG_TYPE, "lat=true is a boolean"),
        ({"lon": None}, Reason.WRONG_TYPE, "lon=null is null"),
        ({"lon": [121.4]}, Reason.WRONG_TYPE, "lon=[121.4] is an array"),
        ({"speed_kmh": "fast"}, Reason.WRONG_TYPE, "speed_kmh="),
        ({"heading": False}, Reason.WRONG_TYPE, "heading=false"),
        ({"sats": 7.0}, Reason.WRONG_TYPE, "sats=7.0 is a number, expected an integer"),
        ({"sats": True}, Reason.WRONG_TYPE, "sats=true"),
        ({"lat": 999.0}, Reason.OUT_OF_RANGE, "lat=999.0 is outside [-90, 90]"),
        ({"lat": -90.5}, Reason.OUT_OF_RANGE, "lat=-90.5"),
        ({"lon": 180.01}, Reason.OUT_OF_RANGE, "lon=180.01 is outside [-180, 180]"),
        ({"lat": 10**400}, Reason.OUT_OF_RANGE, "too large"),
        ({"speed_kmh": -1.0}, Reason.OUT_OF_RANGE, "speed_kmh=-1.0 is negative"),
        ({"heading": 360.5}, Reason.OUT_OF_RANGE, "heading=360.5 is outside [0, 360]"),
        ({"heading": -1}, Reason.OUT_OF_RANGE, "heading"),
        ({"hdop": -0.1}, Reason.OUT_OF_RANGE, "hdop=-0.1 is negative"),
        ({"sats": -1}, Reason.OUT_OF_RANGE, "sats=-1 is negative"),
        ({"ts": "2024-05-01T12:00:00"}, Reason.BAD_TIME, "has no UTC offset"),
        ({"ts": "soon"}, Reason.BAD_TIME, "ts='soon'"),
        ({"ts": True}, Reason.BAD_TIME, "ts=True"),
        ({"ts": {"s": 1}}, Reason.BAD_TIME, "dict"),
        ({"ts": 1e300}, Reason.BAD_TIME, "outside the representable dates"),
    ],
)
def test_bad_fields(fields: dict[str, Any], reason: Reason, detail: str) -> None:
    error = reason_of(encode(fix(**fields)))
    assert error.reason is reason
    assert detail in error.detail


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"ts": 1714564800, "lat": NaN, "lon": 121.4}', "lat=NaN is not a finite number"),
        (b'{"ts": 1714564800, "lat": 31.2, "lon": Infinity}', "lon=Infinity"),
        (b'{"ts": 1714564800, "lat": 31.2, "lon": 1e999}', "lon=Infinity"),
        (b'{"ts": 1714564800, "lat": 31.2, "lon": 121.4, "hdop": -Infinity}', "hdop=-Infinity"),
    ],
)
def test_non_finite_numbers(raw: bytes, detail: str) -> None:
    error = reason_of(raw)
    assert error.reason is Reason.NOT_FINITE
    assert detail in error.detail


def test_non_finite_time_is_a_bad_time() -> None:
    assert reason_of(b'{"ts": NaN, "lat": 31.2, "lon": 121.4}').reason is Reason.BAD_TIME


def partial(payload: bytes) -> PartialDecode:
    with pytest.raises(PartialDecode) as info:
        decode(ctx(), payload)
    return info.value


def test_error_in_an_array_names_the_item() -> None:
    error = partial(encode([fix(), fix(lat=95.0)]))
    assert error.reason is Reason.OUT_OF_RANGE
    [element] = error.rejected
    assert (element.index, element.reason) == (1, Reason.OUT_OF_RANGE)
    assert element.detail.startswith("element 1: lat=95.0 is outside [-90, 90]")
    error = partial(encode([fix(), "x"]))
    assert error.reason is Reason.WRONG_TYPE
    assert error.rejected[0].detail == "element 1: is a string, expected an object"
    assert error.rejected[0].element == b'"x"'


def test_one_bad_element_among_3000_good_ones_loses_none_of_them() -> None:
    good = [fix(ts=1714564800 + i, lat=31.2 + i * 1e-6) for i in range(3001)]
    doc = [*good[:1234], fix(lat=...), *good[1234:3000]]
    payload = encode(doc)
    error = partial(payload)
    assert len(error.readings) == 3000
    # keyed by their place in the array: the same keys as if the array had been all good
    assert [r.key for r in error.readings] == [
        reading_key(TOPIC, payload, i) for i in range(3001) if i != 1234
    ]
    assert [r.payload.lat for r in error.readings] == [g["lat"] for g in good[:3000]]
    [element] = error.rejected
    assert (element.index, element.reason) == (1234, Reason.MISSING_FIELD)
    assert element.detail == "element 1234: lat is missing"
    assert json.loads(element.element) == fix(lat=...)
    assert error.reason is Reason.MISSING_FIELD
    assert "1 of 3001 elements rejected, 3000 kept" in error.detail
    # a caller that only knows DecodeError still sees a bad message, as before
    assert isinstance(error, DecodeError)


def test_every_bad_element_is_rejected_alone() -> None:
    error = partial(encode([fix(lat="1"), fix(), fix(ts="soon"), fix(sats=-1)]))
    assert [(e.index, e.reason) for e in error.rejected] == [
        (0, Reason.WRONG_TYPE),
        (2, Reason.BAD_TIME),
        (3, Reason.OUT_OF_RANGE),
    ]
    assert len(error.readings) == 1


def test_an_array_with_no_good_element_is_one_bad_message() -> None:
    error = reason_of(encode([fix(lat=95.0), 7]))
    assert not isinstance(error, PartialDecode)
    assert error.reason is Reason.OUT_OF_RANGE
    assert error.detail == (
        "no element of 2 is usable; element 0: lat=95.0 is outside [-90, 90] (and 1 more)"
    )


def test_unknown_stream_format_pair() -> None:
    context = DecodeContext("truck-7", Stream.GPS, "protobuf", "wgs84", TOPIC, RECEIVED)
    assert reason_of(encode(fix()), context).reason is Reason.UNKNOWN_FORMAT


def test_decode_error_carries_reason_and_detail() -> None:
    error = reason_of(encode(fix(lat=999.0)))
    assert str(error) == "out_of_range: lat=999.0 is outside [-90, 90]"


def test_conversion_that_leaves_the_globe_is_refused() -> None:
    error = reason_of(encode(fix(lat=-90.0, lon=-180.0)), ctx("bd09"))
    assert error.reason is Reason.OUT_OF_RANGE
    assert "in WGS-84, outside the valid range" in error.detail
