"""A decoded location → the GPS Reading every other source produces, with the terminal's alarm
flags, status, named inputs and additional items as attributes rules and evidence can use.

The reading's key is the device and the location body's bytes: a terminal resending a report
it was not acknowledged for (alone, or again inside a batch upload) sends the same bytes, and
the journal stores it once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ingest.config import Device, SiteConfig
from ingest.coords import to_wgs84
from ingest.jt808.framing import FrameError
from ingest.jt808.location import LOADS, Location, item_value
from ingest.readings import GpsFix, Reading, Stream
from ingest.timeparse import time_flag

_SCALED: dict[int, tuple[str, int, float]] = {
    0x01: ("mileage_km", 4, 0.1),
    0x02: ("fuel_l", 2, 0.1),
    0x03: ("recorder_speed_kmh", 2, 0.1),
}
_PLAIN: dict[int, tuple[str, int]] = {
    0x04: ("alarm_event_id", 2),
    0x25: ("vehicle_signal", 4),
    0x2A: ("io", 2),
    0x2B: ("analog", 4),
    0x30: ("signal", 1),
    0x31: ("sats", 1),
}
_INPUT_WORD = {"status": None, "io": 0x2A, "signal": 0x25}


def location_key(device_id: str, body: bytes) -> str:
    return f"jt808/{device_id}/{hashlib.blake2b(body, digest_size=12).hexdigest()}"


def attributes(loc: Location, device: Device) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "protocol": "jt808",
        "alarm": loc.alarms,
        "status": loc.flags,
        "load": LOADS[(loc.status >> 8) & 0x3],
        "altitude_m": loc.altitude_m,
    }
    raw: dict[str, str] = {}
    for item, value in loc.items.items():
        if item in _SCALED and len(value) == _SCALED[item][1]:
            name, _, scale = _SCALED[item]
            attrs[name] = round(item_value(value) * scale, 1)
        elif item in _PLAIN and len(value) == _PLAIN[item][1]:
            attrs[_PLAIN[item][0]] = item_value(value)
        else:
            raw[f"0x{item:02x}"] = value.hex()
    if raw:
        attrs["items"] = raw
    if device.inputs:
        attrs["inputs"] = active_inputs(loc, device.inputs)
    return attrs


def active_inputs(loc: Location, inputs: dict[str, str]) -> list[str]:
    """The device's named inputs (`dump_raised: io:0`) that are on in this report."""
    on = []
    for name, where in inputs.items():
        source, _, bit = where.partition(":")
        item = _INPUT_WORD[source]
        if item is None:
            word = loc.status
        elif item in loc.items:
            word = item_value(loc.items[item])
        else:
            continue
        if word >> int(bit) & 1:
            on.append(name)
    return on


def to_reading(
    loc: Location, body: bytes, device: Device, config: SiteConfig, received: datetime
) -> Reading:
    lat, lon = loc.lat, loc.lon
    if device.crs.value != "wgs84":
        try:
            lat, lon = to_wgs84(lat, lon, device.crs.value)
        except ValueError as exc:
            raise FrameError("out_of_range", f"device {device.id}: {exc}") from None
    attrs = attributes(loc, device)
    sats = attrs.get("sats")
    fix = GpsFix(
        lat=lat,
        lon=lon,
        speed_kmh=loc.speed_kmh,
        heading=float(loc.heading),
        sats=sats if isinstance(sats, int) else None,
        valid=loc.positioned,
        source="jt808",
        attributes=attrs,
    )
    ingest = config.ingest
    return Reading(
        key=location_key(device.id, body),
        device_id=device.id,
        stream=Stream.GPS,
        device_ts=loc.time,
        received_ts=received,
        time_flag=time_flag(loc.time, received, ingest.max_clock_future_s, ingest.max_clock_past_s),
        payload=fix,
    )
