"""The bytes the simulated devices send: compact JSON, GPS fixes as JSON or NMEA 0183."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce

KNOTS_PER_KMH = 1 / 1.852


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
