"""Framing, headers and location decoding on the standard's example frames, and Hypothesis:
every frame round-trips, and no byte string makes the decoder raise anything but FrameError."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808.framing import FrameError, FrameSplitter, Oversized, check_code, unwrap, wrap
from ingest.jt808.location import (
    Location,
    bcd_time,
    decode_location,
    encode_location,
    join_batch,
    split_batch,
)
from ingest.jt808.message import build, parse, phone_bcd
from ingest.jt808.reassembly import Reassembler, Whole, resend_request
from tests.ingest.jt808.kit import frame


def message(name: str):
    [content] = FrameSplitter(4096).feed(frame(name))
    return parse(unwrap(content))  # type: ignore[arg-type]


def test_2019_location_example_decodes_as_published() -> None:
    m = message("0200_2019")
    assert (m.header.msg_id, m.header.version, m.header.phone) == (0x0200, 1, "13912344329")
    loc = decode_location(m.body)
    assert (loc.alarm, loc.status, loc.altitude_m, loc.speed_kmh, loc.heading) == (
        111, 22, 123, 6.6, 3
    )  # fmt: skip
    assert (loc.lat, loc.lon) == (-31.234567, 121.987654)  # status bit 2: south
    assert loc.time == datetime(2025, 1, 29, 14, 33, 44, tzinfo=UTC)  # 22:33:44 GMT+8
    assert loc.items == {0x02: b"\x00\x64", 0x01: b"\x00\x00\x00\x0c"}
    assert loc.alarms == ["emergency", "overspeed", "fatigue", "danger_warning", "gnss_antenna_cut",
                          "gnss_antenna_short"]  # fmt: skip


def test_2019_batch_example() -> None:
    kind, items = split_batch(message("0704_2019").body)
    locs = [decode_location(i) for i in items]
    assert kind == 0 and [(x.lat, x.altitude_m, x.heading) for x in locs] == [
        (31.000562, 666, 89),
        (31.000563, 777, 90),
    ]


def test_2013_frames() -> None:
    register = message("0100_2013")
    assert (register.header.version, register.header.phone) == (None, "13511221122")
    assert message("0102_2013").body == b"authentication"
    loc = decode_location(message("0200_2013").body)
    assert loc.flags == ["acc", "gps"] and not loc.positioned  # no fix yet: kept, marked invalid
    assert loc.items[0x30] == b"\x1b" and loc.items[0x31] == b"\x03"
    with pytest.raises(FrameError, match="check code 0xd0"):
        unwrap(frame("0200_2013_bad_check")[1:-1])


def test_splitter_across_reads_shared_delimiters_and_junk() -> None:
    a, b = frame("0002_2013"), frame("0102_2013")
    stream = b"junk" + a + b[1:]  # one 0x7E between the two frames
    splitter = FrameSplitter(4096)
    out = [p for byte in stream for p in splitter.feed(bytes((byte,)))]
    assert out == [a[1:-1], b[1:-1]] and splitter.junk == 4 and not splitter.partial
    too_long = FrameSplitter(64).feed(b"\x7e" + b"\x01" * 100)
    assert isinstance(too_long[0], Oversized) and too_long[0].size == 100


def test_bad_escape_bcd_time_and_length() -> None:
    with pytest.raises(FrameError, match="0x7d followed by 0x03"):
        unwrap(b"\x01\x7d\x03\x00")
    with pytest.raises(FrameError, match="not BCD"):
        bcd_time(bytes.fromhex("2501a9223344"))
    with pytest.raises(FrameError, match="YYMMDDhhmmss"):
        bcd_time(bytes.fromhex("251332223344"))
    raw = unwrap(frame("0002_2013")[1:-1]) + b"\x00"
    with pytest.raises(FrameError, match="0-byte body, the frame carries 1"):
        parse(raw)


def test_subpackages_reassemble_and_ask_for_missing_parts() -> None:
    bcd = phone_bcd("13912344329", 1)
    parts = [parse(unwrap(build(0x0704, body, phone_bcd=bcd, serial=10 + i, version=1,
                                packages=3, index=i + 1)[1:-1]))
             for i, body in enumerate((b"ab", b"cd", b"ef"))]  # fmt: skip
    joiner = Reassembler(1024, 60)
    assert joiner.add(parts[0].header, parts[0].body) is None
    missing = joiner.add(parts[2].header, parts[2].body)
    assert missing == [2]
    assert resend_request(parts[2].header, [2]) == b"\x00\x0a\x00\x01\x00\x02"
    whole = joiner.add(parts[1].header, parts[1].body)
    assert isinstance(whole, Whole) and whole.body == b"abcdef"
    with pytest.raises(OverflowError):
        Reassembler(3, 60).add(parts[0].header, b"abcd")


# ---- Hypothesis ----------------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
locations = st.builds(
    Location,
    alarm=st.integers(0, 2**32 - 1),
    status=st.integers(0, 2**32 - 1),
    lat=st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6),
    lon=st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6),
    altitude_m=st.integers(0, 65535),
    speed_kmh=st.integers(0, 65535).map(lambda v: v / 10),
    heading=st.integers(0, 359),
    time=times,
    items=st.dictionaries(st.integers(0, 255), st.binary(max_size=40), max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(locations)
def test_location_round_trips(loc: Location) -> None:
    back = decode_location(encode_location(loc))
    assert (back.lat, back.lon) == (loc.lat, loc.lon)
    assert back.time == loc.time and back.items == loc.items
    assert (back.alarm, back.speed_kmh, back.heading) == (loc.alarm, loc.speed_kmh, loc.heading)
    assert back.status & ~0xC == loc.status & ~0xC  # 2, 3: the hemispheres, from the signs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1023), st.integers(0, 0xFFFF), st.sampled_from([None, 1]),
       st.from_regex(r"[1-9][0-9]{0,11}", fullmatch=True))  # fmt: skip
def test_frames_round_trip(body: bytes, serial: int, version: int | None, phone: str) -> None:
    wire = build(0x0200, body, phone_bcd=phone_bcd(phone, version), serial=serial, version=version)
    assert wire.count(b"\x7e") == 2
    [content] = FrameSplitter(4096).feed(wire)
    m = parse(unwrap(content))  # type: ignore[arg-type]
    assert (m.body, m.header.serial, m.header.version, m.header.phone) == (
        body, serial, version, phone
    )  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    for decoder in (
        lambda: parse(unwrap(data)),
        lambda: decode_location(data),
        lambda: split_batch(data),
    ):
        with contextlib.suppress(FrameError):
            decoder()
    FrameSplitter(128).feed(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(locations, min_size=1, max_size=5), st.integers(0, 1))
def test_batches_round_trip(locs: list[Location], kind: int) -> None:
    items = [encode_location(x) for x in locs]
    assert split_batch(join_batch(items, kind)) == (kind, items)


def test_check_code_matches_a_byte_loop() -> None:
    for data in (b"", b"\x7e", bytes(range(256)) * 3 + b"\x7e\x7d", bytes(range(63))):
        value = 0
        for byte in data:
            value ^= byte
        assert check_code(data) == value
    assert wrap(b"") == b"\x7e\x00\x7e"
