"""Parking geomagnetic sensors: the raw field in µT, or the occupancy the sensor decided itself."""

from __future__ import annotations

from typing import Any

from ingest.decoders.base import DecodeContext, DecodeError, Reason
from ingest.decoders.fields import (
    check_range,
    device_time,
    json_kind,
    json_object,
    make_reading,
    number,
    show,
)
from ingest.readings import GeomagField, GeomagState, Payload, Reading

MAX_FIELD_UT = 2000.0
_AXES = ("x", "y", "z")


def _occupied(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int:
        if value in (0, 1):
            return value == 1
        raise DecodeError(Reason.OUT_OF_RANGE, f"occupied={show(value)} is not 0 or 1")
    raise DecodeError(
        Reason.WRONG_TYPE,
        f"occupied={show(value)} is {json_kind(value)}, expected a boolean or 0/1",
    )


def _field(obj: dict[str, Any]) -> GeomagField:
    x, y, z = (number(obj, axis) for axis in _AXES)
    for axis, value in zip(_AXES, (x, y, z), strict=True):
        check_range(axis, value, -MAX_FIELD_UT, MAX_FIELD_UT)
    return GeomagField(x, y, z)


def decode_geomag_json(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """`{ts, x, y, z}` or `{ts, occupied}`; a sensor sending both yields both readings."""
    obj = json_object(payload)
    has_field = any(axis in obj for axis in _AXES)
    has_state = "occupied" in obj
    if not (has_field or has_state):
        raise DecodeError(Reason.MISSING_FIELD, "x, y, z (or occupied) are missing")
    samples: list[Payload] = []
    if has_field:
        samples.append(_field(obj))
    if has_state:
        samples.append(GeomagState(_occupied(obj["occupied"])))
    device_ts, flag = device_time(ctx, obj)
    return [
        make_reading(ctx, payload, index, device_ts, flag, sample)
        for index, sample in enumerate(samples)
    ]
