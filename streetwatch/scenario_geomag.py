"""Parking bays under geomagnetic sensors: cars arriving and leaving, as raw field samples or
as the on-board occupancy decisions of a sensor that decides for itself."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ingest.config import Device
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context
from streetwatch.scenario_formats import _json

GEOMAG_PERIOD_S = 2.0
GEOMAG_HEARTBEAT_S = 30.0


@dataclass(frozen=True, slots=True)
class CarVisit:
    arrive_s: float
    leave_s: float
    delta: tuple[float, float, float]
    ramp_in_s: float
    ramp_out_s: float

    def field(self, t: float) -> tuple[float, float, float]:
        if t <= self.arrive_s or t >= self.leave_s + self.ramp_out_s:
            return 0.0, 0.0, 0.0
        if t < self.leave_s:
            share = _smoothstep((t - self.arrive_s) / self.ramp_in_s)
        else:
            share = 1.0 - _smoothstep((t - self.leave_s) / self.ramp_out_s)
        return self.delta[0] * share, self.delta[1] * share, self.delta[2] * share


def _smoothstep(u: float) -> float:
    u = max(0.0, min(1.0, u))
    return u * u * (3 - 2 * u)


def _long_parker(geomags: list[Device]) -> Device | None:
    """The sensor that gets a car parked for most of the run: a fire-lane bay if there is one."""

    def fire_lane(device: Device) -> bool:
        text = f"{device.id} {device.name} {device.bay or ''}".lower()
        return "fire" in text or "消防" in text

    raw = geomags[:-1] or geomags
    return next((d for d in raw if fire_lane(d)), next(iter(raw), None))


def _car_delta(rng: random.Random) -> tuple[float, float, float]:
    magnitude = rng.uniform(15, 60)
    vertical = rng.choice((-1, 1)) * rng.uniform(0.6, 0.95)
    horizontal = math.sqrt(1 - vertical * vertical)
    angle = rng.uniform(0, 2 * math.pi)
    return (
        magnitude * horizontal * math.cos(angle),
        magnitude * horizontal * math.sin(angle),
        magnitude * vertical,
    )


def car_visits(rng: random.Random, duration_s: float, long_stay: bool) -> list[CarVisit]:
    """Cars arriving and leaving one bay; the bay is empty at the start."""

    def visit(arrive: float, leave: float) -> CarVisit:
        return CarVisit(arrive, leave, _car_delta(rng), rng.uniform(2, 6), rng.uniform(2, 5))

    if long_stay:
        arrive = max(4.0, duration_s * rng.uniform(0.04, 0.08))
        return [visit(arrive, duration_s * rng.uniform(0.86, 0.92))]
    visits = []
    t = rng.uniform(0.05, 0.3) * min(duration_s, 600.0)
    while t < duration_s:
        stay = rng.uniform(30, 300)
        visits.append(visit(t, t + stay))
        t += stay + 8 + rng.uniform(20, 180)
    return visits


def _geomag(ctx: _Context, device: Device, *, long_stay: bool, on_board: bool) -> list[SimMessage]:
    rng = ctx.rng(device, "geomag")
    visits = car_visits(ctx.rng(device, "cars"), ctx.duration_s, long_stay)
    topic = ctx.topic(device, Stream.GEOMAG)
    phase = rng.uniform(0, GEOMAG_PERIOD_S)
    if on_board:
        return _geomag_decisions(ctx, rng, topic, visits, phase)
    baseline = (rng.gauss(33, 1.5), rng.gauss(-3, 1.5), rng.gauss(35, 1.5))
    temp_coeff = [rng.uniform(-0.15, 0.15) for _ in range(3)]
    messages = []
    for t in ctx.times(GEOMAG_PERIOD_S, phase):
        warming = 3.0 * t / 3600 + 0.5 * math.sin(2 * math.pi * t / 900)
        car = [0.0, 0.0, 0.0]
        for v in visits:
            car = [a + b for a, b in zip(car, v.field(t), strict=True)]
        values = [
            round(base + c * warming + delta + rng.gauss(0, 0.3), 2)
            for base, c, delta in zip(baseline, temp_coeff, car, strict=True)
        ]
        payload = {"ts": ctx.clock.iso(t), "x": values[0], "y": values[1], "z": values[2]}
        messages.append(SimMessage(t, topic, _json(payload)))
    return messages


def _geomag_decisions(
    ctx: _Context, rng: random.Random, topic: str, visits: list[CarVisit], phase: float
) -> list[SimMessage]:
    """`{ts, occupied}` on every change (a second or two after the field settles) + heartbeats."""
    changes = []
    for v in visits:
        changes.append((v.arrive_s + v.ramp_in_s + rng.uniform(1, 3), True))
        changes.append((v.leave_s + v.ramp_out_s + rng.uniform(1, 3), False))
    events = [(t, state) for t, state in changes if t < ctx.duration_s]
    for t in ctx.times(GEOMAG_HEARTBEAT_S, phase):
        state = next((s for when, s in reversed(changes) if when <= t), False)
        events.append((t, state))
    return [
        SimMessage(t, topic, _json({"ts": ctx.clock.iso(t), "occupied": state}))
        for t, state in sorted(events)
    ]
