"""Vehicles on the move: GPS trackers driving round the block or through a restricted zone,
and drones flying a survey pattern."""

from __future__ import annotations

import random
from collections.abc import Iterator

from shapely.geometry import Polygon

from ingest.config import Device, ZoneKind
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context
from streetwatch.scenario_formats import Fix, _json, json_fix, nmea_fix
from streetwatch.scenario_geometry import Loop

KMH_PER_MS = 3.6
GPS_PERIOD_S = 1.0
TELEMETRY_PERIOD_S = 0.5

# ---- GPS vehicles -------------------------------------------------------------------------


def _restricted_polygon(device: Device) -> Polygon | None:
    zone = next((z for z in device.zones if z.kind is ZoneKind.RESTRICTED), None)
    return None if zone is None else Polygon(zone.polygon)


def _patrol_loop(rng: random.Random) -> Loop:
    """Around the block: an L-shaped loop of streets some 300-450 m from the centre."""
    w, h = rng.uniform(300, 450), rng.uniform(220, 350)
    notch_x, notch_y = w * rng.uniform(0.2, 0.5), h * rng.uniform(0.3, 0.6)
    return Loop(
        [(-w, -h), (w, -h), (w, h - notch_y), (w - notch_x, h - notch_y), (w - notch_x, h), (-w, h)]
    )


def _through_zone_loop(ctx: _Context, zone: Polygon) -> Loop:
    """West to east straight through the zone, then back around its north side."""
    margin = 120.0
    corners = [ctx.frame.to_xy(lat, lon) for lon, lat in zone.exterior.coords]
    min_x, max_x = min(c[0] for c in corners), max(c[0] for c in corners)
    max_y = max(c[1] for c in corners)
    inside = zone.representative_point()
    _, cross_y = ctx.frame.to_xy(inside.y, inside.x)
    west, east, north = min_x - margin, max_x + margin, max_y + margin
    return Loop([(west, cross_y), (east, cross_y), (east, north), (west, north)])


def _drive(
    ctx: _Context, rng: random.Random, loop: Loop, start_s: float
) -> Iterator[tuple[float, float, float, float, float]]:
    """(t, x, y, heading, speed km/h) at 1 Hz: cruising 25-40 km/h, slowing to 15 at corners."""
    s = start_s
    speed = rng.uniform(20, 30)
    cruise = rng.uniform(25, 38)
    noise_x = noise_y = 0.0
    phase = (-ctx.clock.start.timestamp()) % GPS_PERIOD_S
    for t in ctx.times(GPS_PERIOD_S, phase):
        x, y, heading, corner = loop.at(s)
        if corner < 1.0 and rng.random() < 0.5:
            cruise = rng.uniform(25, 38)
        target = 15.0 + (cruise - 15.0) * min(1.0, corner / 40.0)
        speed += max(-6.0, min(4.0, target - speed))
        speed = max(15.0, min(40.0, speed))
        noise_x = 0.8 * noise_x + rng.gauss(0, 0.5)
        noise_y = 0.8 * noise_y + rng.gauss(0, 0.5)
        yield t, x + noise_x, y + noise_y, heading, speed
        s += speed / KMH_PER_MS * GPS_PERIOD_S


def _gps(ctx: _Context, device: Device) -> list[SimMessage]:
    rng = ctx.rng(device, "gps")
    zone = _restricted_polygon(device)
    if zone is None:
        loop = _patrol_loop(rng)
        start_s = rng.uniform(0, loop.length)
    else:
        loop = _through_zone_loop(ctx, zone)
        start_s = 0.0
    topic = ctx.topic(device, Stream.GPS)
    sats = rng.randint(14, 22)
    messages = []
    for t, x, y, heading, speed in _drive(ctx, rng, loop, start_s):
        if rng.random() < 0.1:
            sats = max(8, min(28, sats + rng.choice((-1, 1))))
        hdop = max(0.5, min(2.5, 14.0 / sats + rng.gauss(0, 0.05)))
        speed_kmh = max(15.0, min(40.0, speed + rng.gauss(0, 0.3)))
        lat, lon = ctx.device_coords(device, x, y)
        fix = Fix(lat, lon, speed_kmh, heading, hdop, sats, 4.0 + rng.gauss(0, 0.5))
        if device.format == "nmea":
            payload = nmea_fix(ctx.clock.at(t), fix)
        else:
            payload = json_fix(ctx.clock.iso(t), fix)
        messages.append(SimMessage(t, topic, payload))
    return messages


# ---- drones -------------------------------------------------------------------------------


def _survey_loop(rng: random.Random) -> Loop:
    """A lawn-mower pattern over the site: parallel passes 40 m apart."""
    half_w, half_h, spacing = rng.uniform(120, 180), rng.uniform(80, 120), 40.0
    points = []
    y = -half_h
    east = True
    while y <= half_h:
        row = [(-half_w, y), (half_w, y)]
        points += row if east else row[::-1]
        east = not east
        y += spacing
    return Loop(points)


def _drone(ctx: _Context, device: Device) -> list[SimMessage]:
    rng = ctx.rng(device, "drone")
    loop = _survey_loop(rng)
    topic = ctx.topic(device, Stream.TELEMETRY)
    climb_s, cruise_alt, speed = 12.0, rng.uniform(50, 70), 6.0
    messages = []
    for t in ctx.times(TELEMETRY_PERIOD_S, rng.uniform(0, TELEMETRY_PERIOD_S)):
        flying = max(0.0, t - climb_s)
        x, y, heading, _ = loop.at(flying * speed)
        alt = cruise_alt * min(1.0, t / climb_s) + rng.gauss(0, 0.2)
        lat, lon = ctx.device_coords(device, x + rng.gauss(0, 0.3), y + rng.gauss(0, 0.3))
        payload = {
            "ts": ctx.clock.iso(t),
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "alt_m": round(max(0.0, alt), 1),
            "heading": round(heading, 1),
            "gimbal_pitch": -30.0 if t < climb_s else -90.0,
        }
        messages.append(SimMessage(t, topic, _json(payload)))
    return messages
