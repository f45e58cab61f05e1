"""A street sweeper on its round: it sweeps its segments in order at working speed, driving
between them at transit speed, and leaves one out (the last listed), then waits at its last
stop, still reporting. `with_deadlines_at` moves every segment's deadline into a run (the demo
and tests), so that the left-out segment opens one case while the run lasts."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from collections.abc import Iterator
from datetime import datetime

from ingest.config import Device, SiteConfig
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context
from streetwatch.scenario_formats import Fix, json_fix, nmea_fix

SWEEP_KMH = 8.0
TRANSIT_KMH = 30.0
PERIOD_S = 1.0

Leg = tuple[list[tuple[float, float]], float]
"""A polyline in local metres and the speed to drive it at."""


def sweeper_plan(device: Device) -> tuple[list[str], str | None]:
    """(segments it sweeps in order, the one it leaves out)."""
    assert device.sweeping is not None
    ids = [s.id for s in device.sweeping.segments]
    if len(ids) == 1:
        return ids, None
    return ids[:-1], ids[-1]


def _legs(ctx: _Context, device: Device) -> list[Leg]:
    assert device.sweeping is not None
    swept, _ = sweeper_plan(device)
    by_id = {s.id: s for s in device.sweeping.segments}
    legs: list[Leg] = []
    here: tuple[float, float] | None = None
    for segment_id in swept:
        segment = by_id[segment_id]
        line = [ctx.frame.to_xy(lat, lon) for lon, lat in device.sweeping.line_wgs84(segment)]
        (x0, y0), (x1, y1) = line[0], line[1]
        length = math.hypot(x1 - x0, y1 - y0)
        lead = (x0 - 40 * (x1 - x0) / length, y0 - 40 * (y1 - y0) / length)
        if here is None:
            here = lead
        legs.append(([here, lead], TRANSIT_KMH))
        legs.append(([lead, *line], SWEEP_KMH))
        (xa, ya), (xb, yb) = line[-2], line[-1]
        tail = math.hypot(xb - xa, yb - ya)
        here = (xb + 40 * (xb - xa) / tail, yb + 40 * (yb - ya) / tail)
        legs.append(([line[-1], here], SWEEP_KMH))
    return legs


def _positions(legs: list[Leg], period_s: float) -> Iterator[tuple[float, float, float, float]]:
    """(x, y, heading, speed km/h) every `period_s` along the legs, then standing at the end."""
    x = y = heading = 0.0
    for points, kmh in legs:
        step = kmh / 3.6 * period_s
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            length = math.hypot(x1 - x0, y1 - y0)
            if length == 0:
                continue
            heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
            n = max(1, round(length / step))
            for i in range(n):
                f = i / n
                x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
                yield x, y, heading, kmh
            x, y = x1, y1
    while True:
        yield x, y, heading, 0.0


def _sweeper(ctx: _Context, device: Device) -> list[SimMessage]:
    rng = random.Random(f"{ctx.seed}/{device.id}/sweeper")
    topic = ctx.topic(device, Stream.GPS)
    positions = _positions(_legs(ctx, device), PERIOD_S)
    messages = []
    sats = rng.randint(12, 20)
    for t in ctx.times(PERIOD_S, (-ctx.clock.start.timestamp()) % PERIOD_S):
        x, y, heading, kmh = next(positions)
        lat, lon = ctx.device_coords(device, x + rng.gauss(0, 0.6), y + rng.gauss(0, 0.6))
        speed = max(0.0, kmh + rng.gauss(0, 0.4)) if kmh else 0.0
        fix = Fix(lat, lon, speed, heading, 1.0 + rng.random() * 0.4, sats)
        if device.format == "nmea":
            payload = nmea_fix(ctx.clock.at(t), fix)
        else:
            payload = json_fix(ctx.clock.iso(t), fix)
        messages.append(SimMessage(t, topic, payload))
    return messages


def with_deadlines_at(config: SiteConfig, when: datetime) -> SiteConfig:
    """The site with every sweeping segment's deadline set to `when`'s local time of day."""
    local = when.astimezone(config.site.tz)
    deadline = dt.time(local.hour, local.minute, local.second)
    devices = []
    for device in config.devices:
        if device.sweeping is not None:
            segments = [
                s.model_copy(update={"deadline": deadline}) for s in device.sweeping.segments
            ]
            sweeping = device.sweeping.model_copy(update={"segments": segments})
            device = device.model_copy(update={"sweeping": sweeping})
        devices.append(device)
    return config.model_copy(update={"devices": devices})


def round_s(config: SiteConfig, device: Device) -> float:
    """Seconds the sweeper's round takes (its last leg ends then), for placing a deadline."""
    from streetwatch.scenario_geometry import LocalFrame, site_center

    frame = LocalFrame(*site_center(config))
    ctx = _Context(config, 0.0, 0, None, frame)  # type: ignore[arg-type]
    total = 0.0
    for points, kmh in _legs(ctx, device):
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            total += math.hypot(x1 - x0, y1 - y0) / (kmh / 3.6)
    return total


__all__ = ["round_s", "sweeper_plan", "with_deadlines_at"]
