"""Sensor detectors throughput: decoded readings/s through SensorDetectors on one core.

The demo site's simulated street (raw and on-board fire-lane sensors, a patrol car on GCJ-02
JSON, a muck truck on NMEA with a restricted zone and a route corridor, a drone), scaled up to
`--fleet` copies of each sensor so that many devices keep state at once. Messages are decoded
before timing; the timed part is `process` for every reading plus a `tick` once per simulated
second, as `streetwatch run` would do.

    .venv/bin/python bench/sensors.py [--duration 1800] [--fleet 20] [--repeat 3]

The limit, in the same run on the same readings: a bare Python loop doing the least any
per-device detector must do per reading: one dict lookup of the device's previous reading by
(device, stream), the time since it, storing this one (`limit_bare_loop_per_s`, the best of as
many runs). `ratio_to_bare_loop` is the detectors' rate over it: what the bay baselines, the GPS
jump filter, zone and corridor tests and building Observations cost beyond that floor.

Last line: `readings_per_s: N /s` (the best of the repeats).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.sensors import SensorDetectors  # noqa: E402
from ingest.config import DeviceKind, SiteConfig, load_config  # noqa: E402
from ingest.decoders import decode  # noqa: E402
from ingest.readings import Reading, Stream  # noqa: E402
from ingest.registry import DeviceRegistry  # noqa: E402
from streetwatch.scenario import build_scenario  # noqa: E402

START = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)


def fleet_site(base: SiteConfig, copies: int) -> SiteConfig:
    """The demo's sensors `copies` times over (ids suffixed), cameras left out."""
    devices = []
    for n in range(copies):
        for device in base.devices:
            if device.kind is DeviceKind.CAMERA:
                continue
            update: dict[str, object] = {"id": f"{device.id}-{n}", "topic": None}
            if device.bay:
                update["bay"] = f"{device.bay}-{n}"
            devices.append(device.model_copy(update=update))
    return base.model_copy(update={"devices": devices, "merchants": []})


def readings(site: SiteConfig, duration_s: float) -> list[tuple[float, Reading]]:
    registry = DeviceRegistry(site)
    out = []
    for message in build_scenario(site, duration_s=duration_s, seed=5, start=START):
        route = registry.route(message.topic)
        if route.stream is Stream.SNAPSHOT:
            continue
        ctx = route.context(message.topic, START + timedelta(seconds=message.at_s + 0.3))
        out += [(message.at_s, r) for r in decode(ctx, message.payload)]
    return out


def run_once(site: SiteConfig, feed: list[tuple[float, Reading]]) -> tuple[float, int]:
    detectors = SensorDetectors(site)
    observations = 0
    next_tick = 1.0
    began = time.perf_counter()
    for at_s, reading in feed:
        observations += len(detectors.process(reading))
        if at_s >= next_tick:
            observations += len(detectors.tick(START + timedelta(seconds=at_s)))
            next_tick = at_s + 1.0
    return time.perf_counter() - began, observations


def bare_loop(feed: list[tuple[float, Reading]]) -> float:
    """The floor: the previous reading per (device, stream) and the time since it."""
    last: dict[tuple[str, Stream], Reading] = {}
    gaps = 0.0
    began = time.perf_counter()
    for _, reading in feed:
        key = (reading.device_id, reading.stream)
        previous = last.get(key)
        if previous is not None:
            gaps += (reading.event_ts - previous.event_ts).total_seconds()
        last[key] = reading
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--fleet", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    site = fleet_site(load_config(REPO / "devices.yaml"), args.fleet)
    print(f"site: {len(site.devices)} sensor devices, {args.duration:.0f} s simulated", flush=True)
    feed = readings(site, args.duration)
    print(f"readings: {len(feed)} decoded", flush=True)
    rates, floors = [], []
    for _ in range(args.repeat):
        seconds, observations = run_once(site, feed)
        rates.append(len(feed) / seconds)
        print(f"run: {seconds:.2f} s, {rates[-1]:,.0f} readings/s, {observations} observations")
        floors.append(len(feed) / bare_loop(feed))
        print(f"  limit: bare loop (previous reading per device): {floors[-1]:,.0f} readings/s")
    rate, limit = max(rates), max(floors)
    print(f"limit_bare_loop_per_s: {limit:.0f} /s")
    print(f"ratio_to_bare_loop: {rate / limit:.3f}")
    print(f"readings_per_s: {rate:.0f} /s")


if __name__ == "__main__":
    main()
