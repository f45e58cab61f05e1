"""0x0200 location reports and 0x0704 batch uploads: decoding and (for the simulator) encoding.

The basic part is 28 bytes: alarm flags DWORD, status DWORD, latitude and longitude DWORD in
millionths of a degree (the hemispheres are status bits 2 and 3), altitude WORD (m), speed WORD
(1/10 km/h), direction WORD (0-359, north 0, clockwise), time BCD[6] YYMMDDhhmmss in GMT+8.
Additional-information items follow: id BYTE, length BYTE, value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from ingest.jt808.framing import FrameError

BASIC = struct.Struct(">IIIIHHH6s")
_WORD = struct.Struct(">H")
_DWORD = struct.Struct(">I")
GMT8 = timezone(timedelta(hours=8))

ALARM_BITS: dict[int, str] = {
    0: "emergency",
    1: "overspeed",
    2: "fatigue",
    3: "danger_warning",
    4: "gnss_fault",
    5: "gnss_antenna_cut",
    6: "gnss_antenna_short",
    7: "power_low",
    8: "power_cut",
    9: "display_fault",
    10: "tts_fault",
    11: "camera_fault",
    12: "ic_card_fault",
    13: "overspeed_warning",
    14: "fatigue_warning",
    18: "driving_overtime",
    19: "parking_overtime",
    20: "area_crossing",
    21: "route_crossing",
    22: "route_time",
    23: "route_deviation",
    24: "vss_fault",
    25: "fuel_abnormal",
    26: "stolen",
    27: "illegal_ignition",
    28: "illegal_displacement",
    29: "collision",
    30: "rollover",
    31: "illegal_door_open",
}
"""Alarm flag bits (JT/T 808-2013/2019, table 24) by the names rules use."""

STATUS_BITS: dict[int, str] = {
    0: "acc",
    1: "positioned",
    4: "out_of_service",
    5: "encrypted",
    10: "oil_cut",
    11: "circuit_cut",
    12: "door_locked",
    13: "door1_open",
    14: "door2_open",
    15: "door3_open",
    16: "door4_open",
    17: "door5_open",
    18: "gps",
    19: "beidou",
    20: "glonass",
    21: "galileo",
    22: "moving",
}
"""Status bits (table 25) that are flags; 2/3 are the hemispheres, 8-9 the load."""

LOADS = ("empty", "half", "reserved", "full")

ALARM_NAMES = frozenset(ALARM_BITS.values())
STATUS_NAMES = frozenset(STATUS_BITS.values())


@dataclass(slots=True)
class Location:
    """One location report (not frozen: built per report on the hot path, never changed)."""

    alarm: int
    status: int
    lat: float
    lon: float
    altitude_m: int
    speed_kmh: float
    heading: int
    time: datetime
    """UTC."""
    items: dict[int, bytes] = field(default_factory=dict)

    @property
    def alarms(self) -> list[str]:
        return list(_names(ALARM_BITS, self.alarm))

    @property
    def flags(self) -> list[str]:
        return list(_names(STATUS_BITS, self.status))

    @property
    def positioned(self) -> bool:
        return bool(self.status & 0x2)


_NAMES_CACHE: dict[tuple[int, int], tuple[str, ...]] = {}


def _names(bits: dict[int, str], value: int) -> tuple[str, ...]:
    """The names of the bits set in `value` (cached: a fleet sends few distinct words)."""
    key = (id(bits), value)
    names = _NAMES_CACHE.get(key)
    if names is None:
        names = tuple(name for bit, name in bits.items() if value >> bit & 1)
        if len(_NAMES_CACHE) > 4096:
            _NAMES_CACHE.clear()
        _NAMES_CACHE[key] = names
    return names


_BCD = [(b >> 4) * 10 + (b & 0xF) if b >> 4 < 10 and b & 0xF < 10 else -1 for b in range(256)]
_EIGHT_HOURS = timedelta(hours=8)


def bcd_time(raw: bytes) -> datetime:
    """BCD YYMMDDhhmmss in GMT+8 → UTC."""
    yy, mo, dd, hh, mi, ss = map(_BCD.__getitem__, raw)
    if yy < 0 or mo < 0 or dd < 0 or hh < 0 or mi < 0 or ss < 0:
        raise FrameError("bad_time", f"time {raw.hex()!r} is not BCD")
    try:
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError as exc:
        raise FrameError("bad_time", f"time {raw.hex()!r} (YYMMDDhhmmss, GMT+8): {exc}") from None
    return local - _EIGHT_HOURS


def to_bcd_time(ts: datetime) -> bytes:
    return bytes.fromhex(ts.astimezone(GMT8).strftime("%y%m%d%H%M%S"))


def decode_location(body: bytes) -> Location:
    if len(body) < BASIC.size:
        raise FrameError(
            "truncated", f"a location is {BASIC.size} bytes and more, this one {len(body)}"
        )
    alarm, status, lat_e6, lon_e6, alt, speed, heading, when = BASIC.unpack_from(body)
    lat = lat_e6 / 1e6
    lon = lon_e6 / 1e6
    if status & 0x4:
        lat = -lat
    if status & 0x8:
        lon = -lon
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise FrameError("out_of_range", f"lat={lat}, lon={lon} is not on Earth")
    if heading > 359:
        raise FrameError("out_of_range", f"direction {heading} (0-359 expected)")
    items: dict[int, bytes] = {}
    pos = BASIC.size
    end = len(body)
    while pos < end:
        if pos + 2 > end:
            raise FrameError("bad_item", f"an additional item cut short at byte {pos}")
        item, length = body[pos], body[pos + 1]
        pos += 2
        if pos + length > end:
            raise FrameError(
                "bad_item", f"item 0x{item:02x} says {length} bytes, {end - pos} are left"
            )
        items[item] = body[pos : pos + length]
        pos += length
    return Location(alarm, status, lat, lon, alt, speed / 10.0, heading, bcd_time(when), items)


def encode_location(loc: Location) -> bytes:
    status = loc.status & ~0xC
    if loc.lat < 0:
        status |= 0x4
    if loc.lon < 0:
        status |= 0x8
    body = BASIC.pack(
        loc.alarm,
        status,
        round(abs(loc.lat) * 1e6),
        round(abs(loc.lon) * 1e6),
        loc.altitude_m,
        round(loc.speed_kmh * 10),
        loc.heading,
        to_bcd_time(loc.time),
    )
    for item, value in loc.items.items():
        body += bytes((item, len(value))) + value
    return body


def split_batch(body: bytes) -> tuple[int, list[bytes]]:
    """0x0704: count WORD, type BYTE (0 normal, 1 blind-area supplement), then per item a
    length WORD and a location body. Returns the type and each item's bytes."""
    if len(body) < 3:
        raise FrameError("truncated", f"a batch upload is 3 bytes and more, this one {len(body)}")
    (count,) = _WORD.unpack_from(body)
    kind = body[2]
    items = []
    pos = 3
    for index in range(count):
        if pos + 2 > len(body):
            raise FrameError("bad_batch", f"item {index} of {count} is missing")
        (length,) = _WORD.unpack_from(body, pos)
        pos += 2
        if pos + length > len(body):
            raise FrameError(
                "bad_batch", f"item {index} says {length} bytes, {len(body) - pos} are left"
            )
        items.append(body[pos : pos + length])
        pos += length
    if pos != len(body):
        raise FrameError("bad_batch", f"{len(body) - pos} bytes after the {count} items")
    return kind, items


def join_batch(items: list[bytes], kind: int = 0) -> bytes:
    out = [_WORD.pack(len(items)), bytes((kind,))]
    for item in items:
        out.append(_WORD.pack(len(item)))
        out.append(item)
    return b"".join(out)


def item_value(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def dword(value: int) -> bytes:
    return _DWORD.pack(value)


def word(value: int) -> bytes:
    return _WORD.pack(value)
