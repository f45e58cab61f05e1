"""A deterministic scenario for a site: what every device in devices.yaml would send, and when.

Pure: no I/O, no clock. The same config, duration, seed and start give the same bytes. Each
device draws from its own random stream (seeded by seed and device id), so adding a device does
not change what the others send.

The parts live in sibling modules, all re-exported here: `scenario_context` (SimMessage, the
run's clock), `scenario_geometry` (the site's centre, local metres, loops), `scenario_formats`
(JSON and NMEA payloads), `scenario_vehicles` (GPS trackers and drones), `scenario_geomag`
(parking bays), `scenario_snapshots` (JPEGs) and `scenario_faults` (bad messages).
"""

from __future__ import annotations

from datetime import datetime

from ingest.config import DeviceKind, SiteConfig
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Clock, _Context
from streetwatch.scenario_drone import flight_of
from streetwatch.scenario_faults import _faults
from streetwatch.scenario_formats import (
    KNOTS_PER_KMH,
    Fix,
    json_fix,
    nmea_checksum,
    nmea_fix,
    nmea_sentence,
)
from streetwatch.scenario_geomag import (
    GEOMAG_HEARTBEAT_S,
    GEOMAG_PERIOD_S,
    CarVisit,
    _geomag,
    _long_parker,
    car_visits,
)
from streetwatch.scenario_geometry import DEFAULT_CENTER, M_PER_DEG, LocalFrame, Loop, site_center
from streetwatch.scenario_sensors import sensor_messages
from streetwatch.scenario_snapshots import SNAPSHOT_PERIOD_S, SNAPSHOT_SIZE, _snapshots, street_jpeg
from streetwatch.scenario_sweeper import _sweeper
from streetwatch.scenario_vehicles import (
    GPS_PERIOD_S,
    KMH_PER_MS,
    TELEMETRY_PERIOD_S,
    _drone,
    _gps,
)


def build_scenario(
    config: SiteConfig,
    *,
    duration_s: float,
    seed: int,
    start: datetime,
    faults: bool = False,
) -> list[SimMessage]:
    """Every message of a `duration_s` run starting at `start` (aware), sorted by `at_s`."""
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s} must be positive")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be an aware datetime")
    ctx = _Context(
        config, duration_s, seed, _Clock(start, config.site.tz), LocalFrame(*site_center(config))
    )
    messages: list[SimMessage] = []
    geomags = [d for d in config.devices if d.kind is DeviceKind.GEOMAGNETIC]
    long_parker = _long_parker(geomags)
    for device in config.devices:
        if device.kind is DeviceKind.GPS:
            messages += _gps(ctx, device) if device.sweeping is None else _sweeper(ctx, device)
        elif device.kind is DeviceKind.GEOMAGNETIC:
            on_board = device is geomags[-1]
            messages += _geomag(ctx, device, long_stay=device is long_parker, on_board=on_board)
        elif device.kind is DeviceKind.DRONE and flight_of(device) is not None:
            continue  # its telemetry follows its footage in real time (scenario_drone)
        elif device.kind is DeviceKind.DRONE:
            messages += _drone(ctx, device)
        if Stream.SNAPSHOT in device.streams:
            messages += _snapshots(ctx, device)
    messages += sensor_messages(ctx, [d for d in config.devices if d.kind is DeviceKind.SENSOR])
    if faults:
        messages += _faults(ctx)
    messages.sort(key=lambda m: m.at_s)
    return messages


def counts_by_topic(messages: list[SimMessage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message.topic] = counts.get(message.topic, 0) + 1
    return counts


__all__ = [
    "DEFAULT_CENTER",
    "GEOMAG_HEARTBEAT_S",
    "GEOMAG_PERIOD_S",
    "GPS_PERIOD_S",
    "KMH_PER_MS",
    "KNOTS_PER_KMH",
    "M_PER_DEG",
    "SNAPSHOT_PERIOD_S",
    "SNAPSHOT_SIZE",
    "TELEMETRY_PERIOD_S",
    "CarVisit",
    "Fix",
    "LocalFrame",
    "Loop",
    "SimMessage",
    "build_scenario",
    "car_visits",
    "counts_by_topic",
    "json_fix",
    "nmea_checksum",
    "nmea_fix",
    "nmea_sentence",
    "site_center",
    "street_jpeg",
]
