"""Field checks every JSON decoder shares: strict types, finite numbers, ranges, device time.

These sit on the hottest path of the box (every vehicle, every second), so fields are checked
directly on the parsed dict instead of through a schema library.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import orjson

from ingest.coords import to_wgs84
from ingest.decoders.base import DecodeContext, DecodeError, Reason, reading_key
from ingest.readings import Payload, Reading, TimeFlag
from ingest.timeparse import TimeParseError, parse_ts, time_flag

_SHOW_MAX = 40
_JSON_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def show(value: Any) -> str:
    """A value as the device wrote it (JSON syntax), cut short for log lines."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def load_json(payload: bytes) -> Any:
    """The payload's JSON document, or a DecodeError saying why not. orjson takes every payload
    that is strict JSON in UTF-8 (all but a bad one); anything it refuses goes the standard
    library's way, which accepts the same documents as before (a BOM, NaN) and names what is
    wrong with the others."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            Reason.BAD_ENCODING,
            f"payload is not UTF-8: byte 0x{payload[exc.start]:02x} at offset {exc.start}",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise DecodeError(Reason.EMPTY, "payload is only whitespace") from None
        raise DecodeError(
            Reason.NOT_JSON,
            f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reason.NOT_JSON, f"payload is not usable JSON: {exc}") from None


def json_object(payload: bytes) -> dict[str, Any]:
    """The payload as one JSON object, for streams that send exactly one sample a message."""
    doc = load_json(payload)
    if type(doc) is not dict:
        raise DecodeError(Reason.WRONG_TYPE, f"payload is {json_kind(doc)}, expected an object")
    return doc


def as_number(value: Any, name: str) -> float:
    """A JSON number as a finite float. `name` is the field path used in the error."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        raise DecodeError(Reason.NOT_FINITE, f"{name}={show(value)} is not a finite number")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise DecodeError(Reason.OUT_OF_RANGE, f"{name}={show(value)} is too large") from None
    raise DecodeError(
        Reason.WRONG_TYPE, f"{name}={show(value)} is {json_kind(value)}, expected a number"
    )


def number(obj: dict[str, Any], name: str, where: str = "") -> float:
    try:
        value = obj[name]
    except KeyError:
        raise DecodeError(Reason.MISSING_FIELD, f"{where}{name} is missing") from None
    return as_number(value, where + name)


def optional_number(obj: dict[str, Any], name: str, where: str = "") -> float | None:
    """A number that may be absent or null."""
    value = obj.get(name)
    return None if value is None else as_number(value, where + name)


def optional_count(obj: dict[str, Any], name: str, where: str = "") -> int | None:
    """A non-negative integer that may be absent or null."""
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise DecodeError(
            Reason.WRONG_TYPE,
            f"{where}{name}={show(value)} is {json_kind(value)}, expected an integer",
        )
    if value < 0:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{where}{name}={show(value)} is negative")
    return value


def check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{name}={value!r} is outside [{low:g}, {high:g}]")


def check_not_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise DecodeError(Reason.OUT_OF_RANGE, f"{name}={value!r} is negative")


def wgs84_position(
    ctx: DecodeContext, lat: float, lon: float, where: str = ""
) -> tuple[float, float]:
    """Range-check a device coordinate and convert it from the device's CRS to WGS-84."""
    check_range(where + "lat", lat, -90.0, 90.0)
    check_range(where + "lon", lon, -180.0, 180.0)
    if ctx.crs == "wgs84":
        return lat, lon
    try:
        wgs_lat, wgs_lon = to_wgs84(lat, lon, ctx.crs)
    except ValueError as exc:
        raise DecodeError(Reason.UNKNOWN_FORMAT, f"device {ctx.device_id}: {exc}") from None
    if not (-90.0 <= wgs_lat <= 90.0 and -180.0 <= wgs_lon <= 180.0):
        raise DecodeError(
            Reason.OUT_OF_RANGE,
            f"{where}lat={lat!r}, lon={lon!r} in {ctx.crs} is ({wgs_lat!r}, {wgs_lon!r}) "
            "in WGS-84, outside the valid range",
        )
    return wgs_lat, wgs_lon


def device_time(
    ctx: DecodeContext, obj: dict[str, Any], where: str = ""
) -> tuple[datetime, TimeFlag]:
    try:
        raw = obj["ts"]
    except KeyError:
        raise DecodeError(Reason.MISSING_FIELD, f"{where}ts is missing") from None
    try:
        device_ts = parse_ts(raw)
    except TimeParseError as exc:
        raise DecodeError(Reason.BAD_TIME, f"{where}{exc}") from None
    return device_ts, time_flag(device_ts, ctx.received_ts, ctx.max_future_s, ctx.max_past_s)


def make_reading(
    ctx: DecodeContext,
    payload: bytes,
    index: int,
    device_ts: datetime | None,
    flag: TimeFlag,
    data: Payload,
) -> Reading:
    return Reading(
        key=reading_key(ctx.topic, payload, index),
        device_id=ctx.device_id,
        stream=ctx.stream,
        device_ts=device_ts,
        received_ts=ctx.received_ts,
        time_flag=flag,
        payload=data,
    )
