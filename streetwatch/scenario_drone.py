"""Telemetry for a drone whose video is a recorded file: what the drone sent while it filmed.

A drone camera places what it sees from its telemetry at each frame's time, so a drone whose
`stream` is a file (the demo's `drone-car-park.mp4`) needs the telemetry of that flight, in
real time while the video plays: its frames are stamped with the wall clock as they are read.
`FLIGHTS` holds the flight written for each known clip, judged from its frames: the car-park
clip's horizon sits about 127 px above the frame centre (pitch -16° with an 82° lens) and a
parked car about 40 px long half-way down the frame is about 50 m away, so the drone hovers
about 25 m above the car park, drifting slowly to its left. The pose repeats with the clip's
length, as the video loops; the loop's phase is the player's, so the drift (about 2 m a loop)
is within the ground positions' uncertainty rather than matched frame by frame.

`footage_telemetry` is pure (the same arguments give the same bytes); `publish_footage_telemetry`
publishes it on its own thread at real time for `streetwatch simulate` and `make demo`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detectors.geofence import LocalProjection
from ingest.config import Device, DeviceKind, SiteConfig
from ingest.readings import Stream
from streetwatch.scenario_context import _WGS84_TO, SimMessage

log = logging.getLogger(__name__)

FOOTAGE_TELEMETRY_HZ = 5.0


@dataclass(frozen=True, slots=True)
class Flight:
    """A hover with a steady drift, repeating every `period_s` (the clip's length)."""

    lat: float
    lon: float
    """Where the drone is at the clip's first frame (WGS-84)."""
    alt_m: float
    heading_deg: float
    gimbal_pitch_deg: float
    drift_m_s: float
    drift_bearing_deg: float
    period_s: float

    def pose(self, t: float) -> tuple[float, float, float, float, float]:
        """(lat, lon, alt_m, heading, gimbal_pitch) `t` seconds into the clip (any t: loops)."""
        along = self.drift_m_s * (t % self.period_s)
        bearing = math.radians(self.drift_bearing_deg)
        lon, lat = LocalProjection(self.lon, self.lat).lonlat(
            along * math.sin(bearing), along * math.cos(bearing)
        )
        return lat, lon, self.alt_m, self.heading_deg, self.gimbal_pitch_deg


FLIGHTS: dict[str, Flight] = {
    "drone-car-park.mp4": Flight(
        lat=31.19440,
        lon=121.43600,
        alt_m=25.0,
        heading_deg=30.0,
        gimbal_pitch_deg=-16.0,
        drift_m_s=0.1,
        drift_bearing_deg=300.0,
        period_s=600 / 29.97,
    )
}
"""Flights written for the shared assets' drone clips, by file name."""


def flight_of(device: Device) -> Flight | None:
    """The written flight of a drone whose `stream` is a known clip with `fov` set."""
    if device.kind is not DeviceKind.DRONE or device.fov is None or not device.stream:
        return None
    return FLIGHTS.get(Path(device.stream).name)


def footage_telemetry(
    config: SiteConfig, *, duration_s: float, start: datetime, hz: float = FOOTAGE_TELEMETRY_HZ
) -> list[SimMessage]:
    """Telemetry of every drone flying a written flight, `hz` a second for `duration_s`,
    stamped `start + at_s` (publish at speed 1 to match the wall clock), sorted by `at_s`."""
    messages: list[SimMessage] = []
    for device in config.devices:
        flight = flight_of(device)
        if flight is None:
            continue
        topic = config.default_topic(device.id, Stream.TELEMETRY)
        if device.topic and not device.has_wildcard_topic:
            topic = device.topic
        to_crs = _WGS84_TO[device.crs.value]
        for i in range(int(duration_s * hz) + 1):
            t = i / hz
            lat, lon, alt, heading, pitch = flight.pose(t)
            lat, lon = to_crs(lat, lon)
            payload = {
                "ts": (start + timedelta(seconds=t))
                .astimezone(UTC)
                .isoformat(timespec="milliseconds"),
                "lat": round(lat, 7),
                "lon": round(lon, 7),
                "alt_m": alt,
                "heading": heading,
                "gimbal_pitch": pitch,
            }
            messages.append(SimMessage(t, topic, json.dumps(payload).encode()))
    messages.sort(key=lambda m: m.at_s)
    return messages


def publish_footage_telemetry(
    config: SiteConfig,
    url: str,
    duration_s: float,
    stop: threading.Event,
    **publish_options: object,
) -> threading.Thread | None:
    """Start publishing `footage_telemetry` in real time on a thread (None: no such drone).
    `publish_options` go to `publish_scenario` (client_id, username, password, tls)."""
    from streetwatch.simulate import BrokerUnreachable, publish_scenario

    messages = footage_telemetry(config, duration_s=duration_s, start=datetime.now(UTC))
    if not messages:
        return None

    def run() -> None:
        try:
            publish_scenario(messages, url=url, speed=1.0, stop=stop, **publish_options)  # type: ignore[arg-type]
        except BrokerUnreachable as exc:
            # the scenario beside it goes to the same broker and says so, once
            log.debug("drone telemetry for the footage not published: %s", exc)

    thread = threading.Thread(target=run, name="footage-telemetry", daemon=True)
    thread.start()
    return thread
