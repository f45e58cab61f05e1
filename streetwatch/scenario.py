"""A deterministic scenario for a site: what every device in devices.yaml would send, and when.

Pure: no I/O, no clock. The same config, duration, seed and start give the same bytes. Each
device draws from its own random stream (seeded by seed and device id), so adding a device does
not change what the others send.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache, reduce

from PIL import Image, ImageDraw, ImageFont
from shapely.geometry import Polygon

from ingest import coords
from ingest.config import Device, DeviceKind, SiteConfig, ZoneKind
from ingest.readings import Stream

DEFAULT_CENTER = (31.19530, 121.43730)
"""(lat, lon) used when the config places nothing on the map (Xuhui, Shanghai)."""

M_PER_DEG = 6371008.8 * math.pi / 180.0
KMH_PER_MS = 3.6
KNOTS_PER_KMH = 1 / 1.852

GPS_PERIOD_S = 1.0
GEOMAG_PERIOD_S = 2.0
GEOMAG_HEARTBEAT_S = 30.0
TELEMETRY_PERIOD_S = 0.5
SNAPSHOT_PERIOD_S = 10.0
SNAPSHOT_SIZE = (640, 360)

_WGS84_TO: dict[str, Callable[[float, float], tuple[float, float]]] = {
    "wgs84": lambda lat, lon: (lat, lon),
    "gcj02": coords.wgs84_to_gcj02,
    "bd09": coords.wgs84_to_bd09,
}


@dataclass(frozen=True, slots=True)
class SimMessage:
    at_s: float
    topic: str
    payload: bytes = field(repr=False)
    user_properties: tuple[tuple[str, str], ...] = ()
    fault: str | None = None
    """Set on deliberately bad messages: the dead-letter reason the pipeline should give."""


# ---- geometry -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Flat east/north metres around an origin; ample for a few kilometres."""

    lat0: float
    lon0: float

    @property
    def _m_per_deg_lon(self) -> float:
        return M_PER_DEG * math.cos(math.radians(self.lat0))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self._m_per_deg_lon, (lat - self.lat0) * M_PER_DEG

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        return self.lat0 + y / M_PER_DEG, self.lon0 + x / self._m_per_deg_lon


class Loop:
    """A closed polyline in local metres, walked by distance."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = points
        self.segments: list[tuple[float, float, float, float, float]] = []
        start = 0.0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
            length = math.hypot(x1 - x0, y1 - y0)
            if length == 0:
                continue
            self.segments.append((start, x0, y0, x1, y1))
            start += length
        self.length = start

    def at(self, s: float) -> tuple[float, float, float, float]:
        """(x, y, heading in degrees from north, distance to the nearer corner) at distance s."""
        s %= self.length
        index = len(self.segments) - 1
        for i, segment in enumerate(self.segments):
            if segment[0] > s:
                index = i - 1
                break
        begin, x0, y0, x1, y1 = self.segments[index]
        end = self.segments[index + 1][0] if index + 1 < len(self.segments) else self.length
        f = (s - begin) / (end - begin)
        heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        corner = min(s - begin, end - s)
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0), heading, corner


def site_center(config: SiteConfig) -> tuple[float, float]:
    """WGS-84 (lat, lon) of the site: device locations and shop fronts, else geofences."""
    points = [(d.location.lat, d.location.lon) for d in config.devices if d.location]
    points += [_centroid(m.shopfront) for m in config.merchants]
    if not points:
        points = [
            _centroid(zone.polygon)
            for d in config.devices
            if d.kind in (DeviceKind.GPS, DeviceKind.DRONE)
            for zone in d.zones
        ]
    if not points:
        return DEFAULT_CENTER
    return (
        sum(p[0] for p in points) / len(points),
        sum(p[1] for p in points) / len(points),
    )


def _centroid(lonlat: list[tuple[float, float]]) -> tuple[float, float]:
    point = Polygon(lonlat).centroid
    return point.y, point.x


# ---- formatting ---------------------------------------------------------------------------


class _Clock:
    def __init__(self, start: datetime, tz: tzinfo) -> None:
        self.start = start
        self.tz = tz

    def at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def iso(self, t: float) -> str:
        return self.at(t).astimezone(self.tz).isoformat(timespec="milliseconds")

    def utc(self, t: float) -> datetime:
        return self.at(t).astimezone(UTC)


def _json(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def nmea_checksum(body: str) -> str:
    """XOR of the bytes between '$' and '*', as two upper-case hex digits."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def nmea_sentence(body: str) -> str:
    return f"${body}*{nmea_checksum(body)}"


def _ddmm(value: float, degree_digits: int) -> str:
    hundred_thousandths = round(abs(value) * 60 * 100_000)
    degrees, rest = divmod(hundred_thousandths, 60 * 100_000)
    minutes, fraction = divmod(rest, 100_000)
    return f"{degrees:0{degree_digits}d}{minutes:02d}.{fraction:05d}"


def _nmea_time(ts: datetime) -> str:
    return f"{ts:%H%M%S}.{ts.microsecond // 10_000:02d}"


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix in the device's own coordinate system."""

    lat: float
    lon: float
    speed_kmh: float
    heading: float
    hdop: float
    sats: int
    alt_m: float = 4.0


def nmea_fix(ts: datetime, fix: Fix) -> bytes:
    """A `$GNRMC` and a `$GNGGA` sentence for one fix, CRLF separated. `ts` is converted to UTC."""
    utc = ts.astimezone(UTC)
    hms = _nmea_time(utc)
    lat = f"{_ddmm(fix.lat, 2)},{'N' if fix.lat >= 0 else 'S'}"
    lon = f"{_ddmm(fix.lon, 3)},{'E' if fix.lon >= 0 else 'W'}"
    knots = fix.speed_kmh * KNOTS_PER_KMH
    rmc = f"GNRMC,{hms},A,{lat},{lon},{knots:.2f},{fix.heading:.1f},{utc:%d%m%y},,,A"
    gga = f"GNGGA,{hms},{lat},{lon},1,{fix.sats:02d},{fix.hdop:.1f},{fix.alt_m:.1f},M,9.6,M,,"
    return (nmea_sentence(rmc) + "\r\n" + nmea_sentence(gga) + "\r\n").encode("ascii")


def json_fix(ts: str, fix: Fix) -> bytes:
    return _json(
        {
            "ts": ts,
            "lat": round(fix.lat, 7),
            "lon": round(fix.lon, 7),
            "speed_kmh": round(fix.speed_kmh, 1),
            "heading": round(fix.heading, 1),
            "hdop": round(fix.hdop, 1),
            "sats": fix.sats,
        }
    )


# ---- the scenario -------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    config: SiteConfig
    duration_s: float
    seed: int
    clock: _Clock
    frame: LocalFrame

    def rng(self, device: Device, purpose: str = "") -> random.Random:
        return random.Random(f"{self.seed}/{device.id}/{purpose}")

    def topic(self, device: Device, stream: Stream) -> str:
        if device.topic and not device.has_wildcard_topic and stream is device.streams[0]:
            return device.topic
        return self.config.default_topic(device.id, stream)

    def device_coords(self, device: Device, x: float, y: float) -> tuple[float, float]:
        lat, lon = self.frame.to_latlon(x, y)
        return _WGS84_TO[device.crs.value](lat, lon)

    def times(self, period_s: float, phase_s: float) -> Iterator[float]:
        k = 0
        while (t := phase_s + k * period_s) < self.duration_s:
            yield t
            k += 1


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
            messages += _gps(ctx, device)
        elif device.kind is DeviceKind.GEOMAGNETIC:
            on_board = device is geomags[-1]
            messages += _geomag(ctx, device, long_stay=device is long_parker, on_board=on_board)
        elif device.kind is DeviceKind.DRONE:
            messages += _drone(ctx, device)
        if Stream.SNAPSHOT in device.streams:
            messages += _snapshots(ctx, device)
    if faults:
        messages += _faults(ctx)
    messages.sort(key=lambda m: m.at_s)
    return messages


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


# ---- geomagnetic sensors ------------------------------------------------------------------


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


# ---- snapshots ----------------------------------------------------------------------------


def _snapshots(ctx: _Context, device: Device) -> list[SimMessage]:
    rng = ctx.rng(device, "snapshot")
    topic = ctx.topic(device, Stream.SNAPSHOT)
    messages = []
    for t in ctx.times(SNAPSHOT_PERIOD_S, rng.uniform(0, SNAPSHOT_PERIOD_S)):
        iso = ctx.clock.iso(t)
        label = f"{device.id}  {ctx.clock.at(t).astimezone(ctx.clock.tz):%Y-%m-%d %H:%M:%S %z}"
        jpeg = street_jpeg(label, t, device.id, aerial=device.kind is DeviceKind.DRONE)
        messages.append(SimMessage(t, topic, jpeg, (("ts", iso),)))
    return messages


@cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=16)


_CAR_COLOURS = ((200, 40, 40), (40, 90, 200), (230, 230, 230), (30, 30, 30), (230, 190, 40))


def street_jpeg(label: str, t: float, look: str, *, aerial: bool = False) -> bytes:
    """A 640x360 JPEG of a simple street (or top-down blocks) with `label` written on it.

    `look` seeds the buildings and cars, so one camera keeps its view from frame to frame.
    """
    rng = random.Random(f"{look}/look")
    width, height = SNAPSHOT_SIZE
    image = Image.new("RGB", SNAPSHOT_SIZE, (70, 80, 70) if aerial else (150, 190, 230))
    draw = ImageDraw.Draw(image)
    if aerial:
        _aerial(draw, rng, t, width, height)
    else:
        _street(draw, rng, t, width, height)
    box = draw.textbbox((8, 6), label, font=_font())
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
    draw.text((8, 6), label, fill=(255, 255, 255), font=_font())
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70)
    return out.getvalue()


def _street(draw: ImageDraw.ImageDraw, rng: random.Random, t: float, w: int, h: int) -> None:
    horizon = int(h * 0.45)
    x = 0
    while x < w:
        bw, bh = rng.randint(60, 140), rng.randint(80, horizon)
        shade = rng.randint(120, 200)
        draw.rectangle((x, horizon - bh, x + bw, horizon), fill=(shade, shade - 20, shade - 40))
        for wy in range(horizon - bh + 10, horizon - 15, 22):
            for wx in range(x + 8, x + bw - 12, 20):
                draw.rectangle((wx, wy, wx + 10, wy + 12), fill=(90, 110, 140))
        x += bw + rng.randint(2, 10)
    draw.rectangle((0, horizon, w, h), fill=(110, 110, 115))
    draw.rectangle((0, horizon, w, horizon + 18), fill=(170, 165, 160))
    for lane_x in range(-40, w, 80):
        dash = (lane_x + int(t * 9)) % (w + 80) - 40
        draw.rectangle((dash, int(h * 0.75), dash + 40, int(h * 0.75) + 5), fill=(240, 240, 240))
    for i in range(rng.randint(2, 4)):
        cx = (rng.randint(0, w) + int(t * rng.choice((-1, 1)) * rng.uniform(3, 12))) % w
        cy = int(h * 0.58) + i % 2 * 60
        colour = rng.choice(_CAR_COLOURS)
        draw.rounded_rectangle((cx, cy, cx + 110, cy + 45), radius=10, fill=colour)
        draw.rectangle((cx + 20, cy - 18, cx + 85, cy + 4), fill=colour)
        for wheel in (cx + 15, cx + 75):
            draw.ellipse((wheel, cy + 32, wheel + 22, cy + 54), fill=(20, 20, 20))


def _aerial(draw: ImageDraw.ImageDraw, rng: random.Random, t: float, w: int, h: int) -> None:
    shift = int(t * 6) % 160
    for bx in range(-160, w, 160):
        for by in range(-120, h, 120):
            shade = rng.randint(120, 210)
            x0, y0 = bx + shift + 20, by + 20
            draw.rectangle((x0, y0, x0 + 110, y0 + 75), fill=(shade, shade - 30, shade - 50))
    for rx in range(-160 + shift, w, 160):
        draw.rectangle((rx, 0, rx + 18, h), fill=(100, 100, 105))
    for ry in range(0, h, 120):
        draw.rectangle((0, ry, w, ry + 18), fill=(100, 100, 105))


# ---- deliberate faults --------------------------------------------------------------------


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


def counts_by_topic(messages: list[SimMessage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in messages:
        counts[message.topic] = counts.get(message.topic, 0) + 1
    return counts


__all__ = [
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
