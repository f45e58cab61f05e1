"""GPS fixes sent as JSON: one object, or an array of them.

In an array, each element stands alone: a bad element is rejected with its index (an
ElementError inside a PartialDecode) and the good ones are kept, keyed by their index as if the
whole array had been good. Only an array with no good element at all is one bad message.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from ingest.decoders.base import DecodeContext, DecodeError, ElementError, PartialDecode, Reason
from ingest.decoders.fields import (
    check_not_negative,
    check_range,
    device_time,
    json_kind,
    load_json,
    make_reading,
    number,
    optional_count,
    optional_number,
    wgs84_position,
)
from ingest.readings import GpsFix, Reading, TimeFlag

_FLOAT_MAX = sys.float_info.max
_NUMBER = (float, int)  # `type(x) in _NUMBER` leaves bool out


def _plain_fix(ctx: DecodeContext, obj: dict[str, Any]) -> GpsFix | None:
    """The fix of an object that passes every check of `_fix` at a glance (WGS-84, numbers in
    range, finite), else None for `_fix` to name what is wrong. The hot path: one pass over the
    fields, no calls per field."""
    get = obj.get
    lat, lon, speed = get("lat"), get("lon"), get("speed_kmh")
    heading, hdop, sats = get("heading"), get("hdop"), get("sats")
    if (
        ctx.crs == "wgs84"
        and type(lat) in _NUMBER
        and -90.0 <= lat <= 90.0
        and type(lon) in _NUMBER
        and -180.0 <= lon <= 180.0
        and (speed is None or (type(speed) in _NUMBER and 0.0 <= speed <= _FLOAT_MAX))
        and (heading is None or (type(heading) in _NUMBER and 0.0 <= heading <= 360.0))
        and (hdop is None or (type(hdop) in _NUMBER and 0.0 <= hdop <= _FLOAT_MAX))
        and (sats is None or (type(sats) is int and sats >= 0))
    ):
        return GpsFix(
            float(lat),
            float(lon),
            None if speed is None else float(speed),
            None if heading is None else float(heading),
            None if hdop is None else float(hdop),
            sats,
            True,
            "json",
        )
    return None


def _fix(ctx: DecodeContext, obj: dict[str, Any], where: str) -> tuple[datetime, TimeFlag, GpsFix]:
    plain = _plain_fix(ctx, obj)
    if plain is not None:
        device_ts, flag = device_time(ctx, obj, where)
        return device_ts, flag, plain
    lat, lon = wgs84_position(ctx, number(obj, "lat", where), number(obj, "lon", where), where)
    speed = optional_number(obj, "speed_kmh", where)
    check_not_negative(where + "speed_kmh", speed)
    heading = optional_number(obj, "heading", where)
    check_range(where + "heading", heading, 0.0, 360.0)
    hdop = optional_number(obj, "hdop", where)
    check_not_negative(where + "hdop", hdop)
    sats = optional_count(obj, "sats", where)
    device_ts, flag = device_time(ctx, obj, where)
    return device_ts, flag, GpsFix(lat, lon, speed, heading, hdop, sats, True, "json")


def decode_gps_json(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """One fix as a JSON object, or several as a JSON array of objects."""
    doc = load_json(payload)
    if type(doc) is dict:
        device_ts, flag, fix = _fix(ctx, doc, "")
        return [make_reading(ctx, payload, 0, device_ts, flag, fix)]
    if type(doc) is not list:
        raise DecodeError(
            Reason.WRONG_TYPE,
            f"payload is {json_kind(doc)}, expected an object or an array of objects",
        )
    if not doc:
        raise DecodeError(Reason.EMPTY, "payload is an empty array")
    readings: list[Reading] = []
    rejected: list[ElementError] = []
    for index, item in enumerate(doc):
        try:
            if type(item) is not dict:
                raise DecodeError(Reason.WRONG_TYPE, f"is {json_kind(item)}, expected an object")
            device_ts, flag, fix = _fix(ctx, item, "")
        except DecodeError as exc:
            rejected.append(ElementError(exc.reason, exc.detail, index, _element_json(item)))
            continue
        readings.append(make_reading(ctx, payload, index, device_ts, flag, fix))
    if not rejected:
        return readings
    if not readings:
        first = rejected[0]
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        raise DecodeError(first.reason, f"no element of {len(doc)} is usable; {first.detail}{more}")
    raise PartialDecode(readings, rejected, len(doc))


def _element_json(item: Any) -> bytes:
    """An array element as JSON text again, for its dead letter."""
    try:
        return json.dumps(item, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):  # pragma: no cover - it came from JSON
        return repr(item).encode()
