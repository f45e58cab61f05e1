"""Deliberately bad messages: one of each kind the dead-letter path must catch."""

from __future__ import annotations

import random
from collections.abc import Callable

from ingest.config import Device, DeviceKind, SiteConfig
from ingest.readings import Stream
from streetwatch.scenario_context import SimMessage, _Context
from streetwatch.scenario_formats import Fix, _json, nmea_fix


def _unknown_id(config: SiteConfig) -> str:
    n = 99
    while config.device(f"ghost-{n}") is not None:
        n += 1
    return f"ghost-{n}"


def _faults(ctx: _Context) -> list[SimMessage]:
    """A handful of bad messages, one of each kind the dead-letter path must catch."""
    config = ctx.config
    devices = config.devices
    json_gps = next((d for d in devices if d.kind is DeviceKind.GPS and d.format == "json"), None)
    drone = next((d for d in devices if d.kind is DeviceKind.DRONE), None)
    positioned = json_gps or drone
    nmea_gps = next((d for d in devices if d.kind is DeviceKind.GPS and d.format == "nmea"), None)
    geomags = [d for d in devices if d.kind is DeviceKind.GEOMAGNETIC]
    raw_geomag = next(iter(geomags[:-1]), None)
    json_devices = [d for d in devices if d.kind is not DeviceKind.CAMERA and d.format == "json"]
    lat, lon = ctx.frame.lat0, ctx.frame.lon0
    planned: list[tuple[str, Device | None, Callable[[float], bytes]]] = []

    def gps_json(t: float, **extra: object) -> dict[str, object]:
        return {"ts": ctx.clock.iso(t), "lat": round(lat, 6), "lon": round(lon, 6), **extra}

    def position(t: float, lat_text: str) -> bytes:
        alt = ',"alt_m":60.0' if positioned is drone else ""
        return f'{{"ts":"{ctx.clock.iso(t)}","lat":{lat_text},"lon":{lon:.6f}{alt}}}'.encode()

    if positioned is not None:
        planned.append(("not_json", positioned, lambda t: position(t, f"{lat:.6f}")[:-9]))
        planned.append(("out_of_range", positioned, lambda t: position(t, "999")))
    if raw_geomag is not None:
        planned.append(
            (
                "not_finite",
                raw_geomag,
                lambda t: f'{{"ts":"{ctx.clock.iso(t)}","x":NaN,"y":-3.1,"z":35.2}}'.encode(),
            )
        )
    elif positioned is not None:
        planned.append(("not_finite", positioned, lambda t: position(t, "NaN")))
    if nmea_gps is not None:

        def bad_checksum(t: float) -> bytes:
            good = nmea_fix(ctx.clock.at(t), Fix(lat, lon, 20.0, 90.0, 0.9, 16)).decode()
            rmc = good.split("\r\n")[0]
            wrong = f"{int(rmc[-2:], 16) ^ 0x5A:02X}"
            return (rmc[:-2] + wrong + "\r\n").encode()

        def truncated(t: float) -> bytes:
            good = nmea_fix(ctx.clock.at(t), Fix(lat, lon, 20.0, 90.0, 0.9, 16)).decode()
            return good.split("\r\n")[0][:40].encode()

        planned.append(("bad_checksum", nmea_gps, bad_checksum))
        planned.append(("truncated_nmea", nmea_gps, truncated))
    planned.append(("unknown_device", None, lambda t: _json(gps_json(t))))
    if json_devices:
        target = json_devices[0]
        size = max(300 * 1024, config.ingest.max_payload_bytes + 1024)

        def oversized(t: float) -> bytes:
            head = _json(gps_json(t, blob=""))
            return head[:-2] + b"A" * (size - len(head)) + head[-2:]

        planned.append(("oversized", target, oversized))
    rng = random.Random(f"{ctx.seed}/faults")
    messages = []
    for i, (reason, device, make) in enumerate(planned):
        t = ctx.duration_s * (i + 0.5 + rng.uniform(-0.2, 0.2)) / len(planned)
        if device is None:
            topic = config.default_topic(_unknown_id(config), Stream.GPS)
        else:
            topic = ctx.topic(device, device.streams[0])
        messages.append(SimMessage(t, topic, make(t), fault=reason))
    return messages
