"""Whatever the bytes, a decoder returns readings or raises DecodeError, and nothing else."""

import io
import json
import math
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from ingest.decoders import decode
from ingest.decoders.base import DecodeContext, DecodeError
from ingest.readings import (
    DroneTelemetry,
    GeomagField,
    GeomagState,
    GpsFix,
    Reading,
    Snapshot,
    Stream,
)

RECEIVED = datetime(2024, 5, 15, 8, 36, tzinfo=UTC)
PAIRS = [
    (Stream.GPS, "json"),
    (Stream.GPS, "nmea"),
    (Stream.GEOMAG, "json"),
    (Stream.TELEMETRY, "json"),
    (Stream.SNAPSHOT, "jpeg"),
]
MAX_PIXELS = 1_000_000


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def ctx(stream: Stream, fmt: str, crs: str = "wgs84") -> DecodeContext:
    return DecodeContext(
        "dev-1",
        stream,
        fmt,
        crs,
        f"streetwatch/site/dev-1/{stream}",
        RECEIVED,
        user_properties=(("ts", "1715762160"),),
        max_image_pixels=MAX_PIXELS,
    )


def in_range(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


def optional_finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def check_reading(reading: Reading, context: DecodeContext) -> None:
    assert isinstance(reading, Reading)
    assert reading.device_id == context.device_id
    assert reading.received_ts == RECEIVED
    data = reading.payload
    if isinstance(data, GpsFix):
        assert in_range(data.lat, data.lon)
        for value in (data.speed_kmh, data.hdop):
            assert optional_finite(value) and (value is None or value >= 0)
        assert data.heading is None or 0 <= data.heading <= 360
        assert data.sats is None or (isinstance(data.sats, int) and data.sats >= 0)
    elif isinstance(data, DroneTelemetry):
        assert in_range(data.lat, data.lon)
        assert -500 <= data.alt_m <= 10_000
        assert optional_finite(data.heading) and optional_finite(data.gimbal_pitch)
    elif isinstance(data, GeomagField):
        assert all(abs(v) <= 2000 for v in (data.x, data.y, data.z))
    elif isinstance(data, GeomagState):
        assert isinstance(data.occupied, bool)
    else:
        assert isinstance(data, Snapshot)
        assert 0 < data.width * data.height <= MAX_PIXELS


def decode_safely(context: DecodeContext, payload: bytes) -> None:
    try:
        readings = decode(context, payload)
    except DecodeError as error:
        assert error.detail
        event(error.reason.value)
        return
    event("decoded")
    assert isinstance(readings, list)
    for reading in readings:
        check_reading(reading, context)


crs = st.sampled_from(["wgs84", "gcj02", "bd09"])


@fuzz(400)
@given(pair=st.sampled_from(PAIRS), payload=st.binary(max_size=300))
def test_arbitrary_bytes(pair: tuple[Stream, str], payload: bytes) -> None:
    decode_safely(ctx(*pair), payload)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@fuzz(300)
@given(pair=st.sampled_from(PAIRS[:1] + PAIRS[2:4]), value=json_values)
def test_arbitrary_json(pair: tuple[Stream, str], value: Any) -> None:
    decode_safely(ctx(*pair), json.dumps(value).encode())


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, so that whole documents often decode; `bad` otherwise."""
    return st.integers(0, 9).flatmap(lambda roll: bad if roll == 5 else good)


def wild(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values; sometimes wrong types, non-finite or huge numbers."""
    bad = st.one_of(
        json_scalars,
        st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**30]),
        st.lists(json_scalars, max_size=2),
    )
    return mostly(good, bad)


timestamps = wild(
    st.one_of(
        st.integers(-(10**14), 10**14),
        st.floats(-1e13, 1e13),
        st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        st.datetimes().map(datetime.isoformat),
    )
)
latitudes = wild(st.floats(-90.5, 90.5))
longitudes = wild(st.floats(-180.5, 180.5))
angles = wild(st.floats(-10, 370))
microtesla = wild(st.floats(-2100, 2100))
gps_object = st.fixed_dictionaries(
    {"ts": timestamps, "lat": latitudes, "lon": longitudes},
    optional={
        "speed_kmh": wild(st.floats(-1, 300)),
        "heading": angles,
        "hdop": wild(st.floats(-1, 50)),
        "sats": wild(st.integers(-1, 40)),
    },
)
telemetry_object = st.fixed_dictionaries(
    {"ts": timestamps, "lat": latitudes, "lon": longitudes, "alt_m": wild(st.floats(-600, 11000))},
    optional={"heading": angles, "gimbal_pitch": wild(st.floats(-200, 200))},
)
geomag_object = st.one_of(
    st.fixed_dictionaries({"ts": timestamps, "x": microtesla, "y": microtesla, "z": microtesla}),
    st.fixed_dictionaries(
        {"ts": timestamps, "occupied": wild(st.sampled_from([True, False, 0, 1, 2]))}
    ),
    st.fixed_dictionaries(
        {"ts": timestamps},
        optional={"x": microtesla, "y": microtesla, "z": microtesla, "occupied": json_scalars},
    ),
)


@fuzz(400)
@given(doc=gps_object | st.lists(gps_object, max_size=3), crs=crs)
def test_gps_json_objects(doc: Any, crs: str) -> None:
    decode_safely(ctx(Stream.GPS, "json", crs), json.dumps(doc).encode())


@fuzz(200)
@given(doc=telemetry_object, crs=crs)
def test_telemetry_json_objects(doc: Any, crs: str) -> None:
    decode_safely(ctx(Stream.TELEMETRY, "json", crs), json.dumps(doc).encode())


@fuzz(200)
@given(doc=geomag_object)
def test_geomag_json_objects(doc: Any) -> None:
    decode_safely(ctx(Stream.GEOMAG, "json"), json.dumps(doc).encode())


def checksummed(body: str) -> str:
    return f"${body}*{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


nmea_junk = st.one_of(
    st.just(""),
    st.sampled_from(["A", "V", "N", "S", "E", "W", "M", "1", "0", "08", "0.9", "230394"]),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,6})?", fullmatch=True),
    st.text(alphabet="0123456789.-+NSEWAVx", max_size=12),
)


def nmea(pattern: str) -> st.SearchStrategy[str]:
    return mostly(st.from_regex(pattern, fullmatch=True), nmea_junk)


talkers = st.sampled_from(["GP", "GN", "BD", "GB", "GL", "GA"])
utc_time = nmea(r"([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9](\.[0-9]{2})?")
latitude = nmea(r"[0-8][0-9][0-5][0-9]\.[0-9]{2,5}")
longitude = nmea(r"(0[0-9]{2}|1[0-7][0-9])[0-5][0-9]\.[0-9]{2,5}")
north_south = nmea(r"[NS]")
east_west = nmea(r"[EW]")
decimal = nmea(r"[0-9]{1,3}\.[0-9]{1,3}")
rmc = st.builds(
    lambda *fields: checksummed(",".join(fields)),
    talkers.map(lambda talker: talker + "RMC"),
    utc_time,
    nmea(r"[AV]"),
    latitude,
    north_south,
    longitude,
    east_west,
    decimal,
    decimal,
    nmea(r"(0[1-9]|1[0-9]|2[0-8])(0[1-9]|1[0-2])[0-9]{2}"),
    st.just(""),
    st.just(""),
    nmea(r"[ADNEMS]"),
)
gga = st.builds(
    lambda *fields: checksummed(",".join(fields)),
    talkers.map(lambda talker: talker + "GGA"),
    utc_time,
    latitude,
    north_south,
    longitude,
    east_west,
    nmea(r"[0-9]"),
    nmea(r"[0-9]{2}"),
    decimal,
    decimal,
    st.just("M"),
)
other = st.builds(
    lambda address, fields: checksummed(",".join([address, *fields])),
    st.one_of(
        st.tuples(talkers, st.sampled_from(["GSV", "GSA", "VTG", "GLL", "ZDA", "TXT", "XYZ"])).map(
            "".join
        ),
        st.sampled_from(["PUBX", "PASH", "PGRM", "PSRF", "PTNL", "PKWD", "PMGN", "PNOR", "PSXN"]),
    ),
    st.lists(nmea_junk, max_size=15),
)
sentences = st.one_of(rmc, gga, other)


@fuzz(600)
@given(
    lines=st.lists(sentences, min_size=1, max_size=5),
    sep=st.sampled_from(["\r\n", "\n", ""]),
    cut=mostly(st.none(), st.integers(0, 200)),
    crs=crs,
)
def test_nmea_sentences(lines: list[str], sep: str, cut: int | None, crs: str) -> None:
    text = sep.join(lines)
    if cut is not None:
        text = text[:cut]
    decode_safely(ctx(Stream.GPS, "nmea", crs), text.encode())


def _real_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


REAL_JPEG = _real_jpeg()


@fuzz(300)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(REAL_JPEG) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.none() | st.integers(0, len(REAL_JPEG)),
)
def test_mutated_jpeg(edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(REAL_JPEG)
    for position, value in edits:
        data[position] = value
    decode_safely(ctx(Stream.SNAPSHOT, "jpeg"), bytes(data[:cut]))


@fuzz(200)
@given(middle=st.binary(max_size=200))
def test_jpeg_markers_around_garbage(middle: bytes) -> None:
    decode_safely(ctx(Stream.SNAPSHOT, "jpeg"), b"\xff\xd8\xff" + middle + b"\xff\xd9")
