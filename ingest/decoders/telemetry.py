"""Drone telemetry: position, altitude and camera attitude."""

from __future__ import annotations

from ingest.decoders.base import DecodeContext
from ingest.decoders.fields import (
    check_range,
    device_time,
    json_object,
    make_reading,
    number,
    optional_number,
    wgs84_position,
)
from ingest.readings import DroneTelemetry, Reading

ALT_RANGE_M = (-500.0, 10_000.0)


def decode_telemetry_json(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """`{ts, lat, lon, alt_m, heading?, gimbal_pitch?}`."""
    obj = json_object(payload)
    lat, lon = wgs84_position(ctx, number(obj, "lat"), number(obj, "lon"))
    alt_m = number(obj, "alt_m")
    check_range("alt_m", alt_m, *ALT_RANGE_M)
    heading = optional_number(obj, "heading")
    check_range("heading", heading, 0.0, 360.0)
    gimbal_pitch = optional_number(obj, "gimbal_pitch")
    check_range("gimbal_pitch", gimbal_pitch, -180.0, 180.0)
    device_ts, flag = device_time(ctx, obj)
    telemetry = DroneTelemetry(lat, lon, alt_m, heading, gimbal_pitch)
    return [make_reading(ctx, payload, 0, device_ts, flag, telemetry)]
