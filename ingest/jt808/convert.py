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

from ingest.config import Crs, Device, SiteConfig
from ingest.coords import to_wgs84
from ingest.jt808.framing import FrameError
from ingest.jt808.location import LOADS, Location
from ingest.readings import GpsFix, Reading, Stream
from ingest.timeparse import time_flag

_ITEMS: dict[int, tuple[str, int, float | None]] = {
    0x01: ("mileage_km", 4, 0.1),
    0x02: ("fuel_l", 2, 0.1),
    0x03: ("recorder_speed_kmh", 2, 0.1),
    0x04: ("alarm_event_id", 2, None),
    0x25: ("vehicle_signal", 4, None),
    0x2A: ("io", 2, None),
    0x2B: ("analog", 4, None),
    0x30: ("signal", 1, None),
    0x31: ("sats", 1, None),
}
"""Additional items decoded (id: name, length, scale); others are kept raw under `items`."""
_GPS = Stream.GPS
_INPUT_WORD = {"status": None, "io": 0x2A, "signal": 0x25}


def location_key(device_id: str, body: bytes) -> str:
    return f"jt808/{device_id}/{hashlib.blake2b(body, digest_size=12).hexdigest()}"


def attributes(loc: Location, device: Device) -> dict[str, Any]:
    status = loc.status
    attrs: dict[str, Any] = {
        "protocol": "jt808",
        "alarm": loc.alarms,
        "status": loc.flags,
        "load": LOADS[(status >> 8) & 0x3],
        "altitude_m": loc.altitude_m,
    }
    raw: dict[str, str] | None = None
    for item, value in loc.items.items():
        known = _ITEMS.get(item)
        if known is not None and len(value) == known[1]:
            name, _, scale = known
            number = int.from_bytes(value, "big")
            attrs[name] = number if scale is None else round(number * scale, 1)
        else:
            if raw is None:
                raw = attrs["items"] = {}
            raw[f"0x{item:02x}"] = value.hex()
    inputs = device.inputs
    if inputs:
        attrs["inputs"] = active_inputs(loc, inputs)
    return attrs


def active_inputs(loc: Location, inputs: dict[str, str]) -> list[str]:
    """The device's named inputs (`dump_raised: io:0`) that are on in this report."""
    on = []
    for name, item, bit in _compiled(inputs):
        if item is None:
            word = loc.status
        else:
            value = loc.items.get(item)
            if value is None:
                continue
            word = int.from_bytes(value, "big")
        if word >> bit & 1:
            on.append(name)
    return on


_COMPILED: dict[int, tuple[dict[str, str], list[tuple[str, int | None, int]]]] = {}


def _compiled(inputs: dict[str, str]) -> list[tuple[str, int | None, int]]:
    """`{name: "io:0"}` → [(name, item id or None for the status word, bit)], once per map."""
    cached = _COMPILED.get(id(inputs))
    if cached is not None and cached[0] is inputs:
        return cached[1]
    out = []
    for name, where in inputs.items():
        source, _, bit = where.partition(":")
        out.append((name, _INPUT_WORD[source], int(bit)))
    _COMPILED[id(inputs)] = (inputs, out)
    return out


def to_reading(
    loc: Location, body: bytes, device: Device, config: SiteConfig, received: datetime
) -> Reading:
    lat, lon = loc.lat, loc.lon
    if device.crs is not Crs.WGS84:
        try:
            lat, lon = to_wgs84(lat, lon, device.crs.value)
        except ValueError as exc:
            raise FrameError("out_of_range", f"device {device.id}: {exc}") from None
    attrs = attributes(loc, device)
    sats = attrs.get("sats")
    # positional: lat, lon, speed_kmh, heading, hdop, sats, valid, source, attributes
    fix = GpsFix(
        lat, lon, loc.speed_kmh, float(loc.heading), None, sats, loc.positioned, "jt808", attrs
    )
    ingest = config.ingest
    device_id = device.id
    return Reading(
        location_key(device_id, body),
        device_id,
        _GPS,
        loc.time,
        received,
        time_flag(loc.time, received, ingest.max_clock_future_s, ingest.max_clock_past_s),
        fix,
    )
