"""Environment and facility sensors (`kind: sensor`): every SENSOR_PERIOD_S a JSON message per
declared metric (a message may carry any of them; one each keeps one reading per message, as
the run tests count), shaped so the demo's rules have something to find.

Times are fractions of the run, so a short demo and a long replay tell the same story:
- the first bin fills up, crosses 90 % at a quarter of the run, hovers at 86-96 % (inside the
  bin-full rule's hysteresis band: one episode) and is emptied at 80 %;
- the second bin reports normally, then goes silent at 30 % (a dead sensor);
- a toilet's ammonia rises over 1.5 ppm between 35 % and 65 %;
- a construction site's PM10 is over 150 µg/m³ between 20 % and 75 %; its noise stays at
  48-54 dB(A) but for a short loud burst (62-70 dB(A), under the night rule's dwell);
- any other metric (a water level, ...) stays near the middle of its declared range.
"""

from __future__ import annotations

import math
import random

from ingest.config import Device, DeviceKind
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context
from streetwatch.scenario_formats import _json

SENSOR_PERIOD_S = 30.0


def _bin_fill(u: float, rng: random.Random) -> float:
    if u < 0.25:
        return 30.0 + 62.0 * u / 0.25 + rng.uniform(-1.5, 1.5)
    if u < 0.8:
        return 91.0 + 5.0 * math.sin(u * 60.0) + rng.uniform(-0.5, 0.5)
    return 4.0 + 10.0 * (u - 0.8) + rng.uniform(0, 1.0)


def _nh3(u: float, rng: random.Random) -> float:
    over = 0.35 <= u < 0.65
    return (2.3 if over else 0.5) + rng.uniform(-0.25, 0.25)


def _pm10(u: float, rng: random.Random) -> float:
    over = 0.2 <= u < 0.75
    return (185.0 if over else 75.0) + rng.uniform(-20.0, 20.0)


def _noise(u: float, rng: random.Random) -> float:
    loud = 0.5 <= u < 0.53
    return (66.0 if loud else 51.0) + rng.uniform(-3.0, 3.0)


def _middle(device: Device, name: str, rng: random.Random) -> float:
    spec = device.metrics[name]  # type: ignore[index]
    low = spec.min if spec.min is not None else 0.0
    high = spec.max if spec.max is not None else low + 10.0
    middle = low + (high - low) * 0.3
    return middle + rng.uniform(-0.001, 0.001) * (high - low)


def _value(device: Device, name: str, u: float, rng: random.Random, first_bin: bool) -> float:
    if name == "fill_pct":
        return _bin_fill(u, rng) if first_bin else 20.0 + 30.0 * u + rng.uniform(-1, 1)
    if name == "nh3_ppm":
        return _nh3(u, rng)
    if name == "pm10_ugm3":
        return _pm10(u, rng)
    if name == "noise_dba":
        return _noise(u, rng)
    return _middle(device, name, rng)


def _clamped(device: Device, name: str, value: float) -> float:
    spec = device.metrics[name]  # type: ignore[index]
    if spec.min is not None:
        value = max(spec.min, value)
    if spec.max is not None:
        value = min(spec.max, value)
    return round(value, 2)


def sensor_messages(ctx: _Context, sensors: list[Device]) -> list[SimMessage]:
    """Every sensor's messages; `sensors` in devices.yaml order (it decides which bin is which)."""
    bins = [d for d in sensors if d.metrics and "fill_pct" in d.metrics]
    messages: list[SimMessage] = []
    for device in sensors:
        if device.kind is not DeviceKind.SENSOR or not device.metrics:
            continue
        rng = ctx.rng(device, "metrics")
        topic = ctx.topic(device, Stream.METRICS)
        first_bin = bool(bins) and device is bins[0]
        dies_at = 0.3 * ctx.duration_s if len(bins) > 1 and device is bins[1] else math.inf
        for t in ctx.times(SENSOR_PERIOD_S, rng.uniform(0, 5.0)):
            if t >= dies_at:
                break
            u = t / ctx.duration_s
            for name in device.metrics:
                value = _clamped(device, name, _value(device, name, u, rng, first_bin))
                payload = {"ts": ctx.clock.iso(t), name: value}
                messages.append(SimMessage(t, topic, _json(payload)))
    return messages
