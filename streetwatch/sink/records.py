"""From local records (journal readings, observations, case events) to database rows.

Each converter returns `(table, row)` for a good record or raises `Reject` with a reason and a
one-line explanation. Rows match the tables' column types, so they can be copied straight into
the table or into a staging table of the same shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson


class Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Column:
    name: str
    stage_type: str
    expr: str | None = None
    """SQL turning the staged value into the table's value; the column itself when None."""


def _time(name: str) -> Column:
    return Column(name, "timestamptz")


_READING_HEAD = [
    _time("ts"),
    Column("key", "text"),
    Column("device_id", "text"),
    _time("device_ts"),
    _time("received_ts"),
    Column("time_flag", "text"),
]

TABLES: dict[str, list[Column]] = {
    "gps_fixes": [
        *_READING_HEAD,
        Column("lat", "float8"),
        Column("lon", "float8"),
        Column("speed_kmh", "float4"),
        Column("heading", "float4"),
        Column("hdop", "float4"),
        Column("sats", "int2"),
        Column("valid", "bool"),
        Column("source", "text"),
        Column("step_m", "float4"),
    ],
    "geomag_fields": [
        *_READING_HEAD,
        Column("bay", "text"),
        Column("x", "float4"),
        Column("y", "float4"),
        Column("z", "float4"),
    ],
    "geomag_states": [*_READING_HEAD, Column("bay", "text"), Column("occupied", "bool")],
    "drone_telemetry": [
        *_READING_HEAD,
        Column("lat", "float8"),
        Column("lon", "float8"),
        Column("alt_m", "float4"),
        Column("heading", "float4"),
        Column("gimbal_pitch", "float4"),
    ],
    "snapshots": [
        *_READING_HEAD,
        Column("width", "int4"),
        Column("height", "int4"),
        Column("jpeg_bytes", "int4"),
    ],
    "observations": [
        _time("ts"),
        Column("key", "text"),
        _time("first_seen"),
        Column("kind", "text"),
        Column("device_id", "text"),
        Column("subject", "text"),
        Column("subject_id", "text"),
        Column("zone_id", "text"),
        Column("zone_kind", "text"),
        Column("state", "text"),
        Column("lon", "float8"),
        Column("lat", "float8"),
        Column("data", "jsonb"),
    ],
    "metrics": [
        *_READING_HEAD,
        Column("metric", "text"),
        Column("value", "float8"),
        Column("unit", "text"),
    ],
    "case_events": [
        _time("ts"),
        Column("case_id", "text"),
        Column("event", "text"),
        Column("origin", "text"),
        Column("rule_id", "text"),
        Column("category", "text"),
        Column("zone_id", "text"),
        Column("data", "jsonb"),
    ],
}

READING_TABLE = {
    "gps": "gps_fixes",
    "geomag_field": "geomag_fields",
    "geomag_state": "geomag_states",
    "telemetry": "drone_telemetry",
    "snapshot": "snapshots",
    "metric": "metrics",
}

MAX_STEP_GAP_S = 300.0
"""Fixes further apart than this do not add distance (the vehicle was off or out of coverage)."""
_M_PER_DEGREE = 6_371_008.8 * math.pi / 180
MAX_EPOCH = 32503680000.0  # 3000-01-01
_isfinite = math.isfinite
_cos, _radians, _sqrt = math.cos, math.radians, math.sqrt
_loads = orjson.loads
_dt = datetime.fromtimestamp


def _num(data: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        raise Reject("missing_field", f"{name} is missing")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Reject("wrong_type", f"{name} is not a number ({value!r})")
    if not _isfinite(value):
        raise Reject("not_finite", f"{name} is {value}")
    if not low <= value <= high:
        raise Reject("out_of_range", f"{name} {value} is outside [{low}, {high}]")
    return value


def _opt(data: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    return None if data.get(name) is None else _num(data, name, low, high)


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if "\x00" in value:
        raise Reject("nul_character", f"{name} contains a NUL character")
    return value


def _epoch(value: Any, name: str) -> float:
    if value is None:
        raise Reject("missing_field", f"{name} is missing")
    if not isinstance(value, int | float) or not _isfinite(value):
        raise Reject("not_finite", f"{name} is {value!r}")
    if not 0 <= value < MAX_EPOCH:
        raise Reject("out_of_range", f"{name} {value} is not a plausible epoch time")
    return float(value)


def _iso_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise Reject("missing_field" if value is None else "wrong_type", f"{name} is {value!r}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Reject("bad_time", f"{name} is not ISO 8601 ({value!r})") from None
    if when.tzinfo is None:
        raise Reject("bad_time", f"{name} has no UTC offset ({value!r})")
    return when


def _json(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        try:  # NaN, Infinity, 1e999: JSON to Python's parser, then refused as not finite
            data = json.loads(text)
        except ValueError:
            raise Reject("bad_json", f"{what} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Reject("bad_json", f"{what} is not a JSON object")
    return data


@dataclass
class ReadingConverter:
    """Journal `readings` rows → per-kind table rows. Keeps each vehicle's last fix for step_m."""

    bays: Mapping[str, str | None] = field(default_factory=dict)
    last_fix: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    SELECT = (
        "SELECT seq, key, device_id, kind, device_ts, received_ts, time_flag, data,"
        " CASE WHEN kind = 'snapshot' THEN"
        " (SELECT length(jpeg) FROM snapshots s WHERE s.key = r.key) END"
        " FROM readings r WHERE seq > ? ORDER BY seq LIMIT ?"
    )

    @staticmethod
    def key_of(row: tuple) -> str:
        return row[1]

    def select(self, tables: set[str]) -> str:
        return self.SELECT

    def snapshot(self) -> dict[str, tuple[float, float, float]]:
        return dict(self.last_fix)

    def restore(self, state: dict[str, tuple[float, float, float]] | None) -> None:
        self.last_fix = dict(state or {})

    def convert(self, row: tuple) -> tuple[str, tuple]:
        if row[3] == "gps":
            try:
                fast = self._gps_fast(row)
            except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
                fast = None
            if fast is not None:
                return "gps_fixes", fast
        return self._checked(row)

    def _gps_fast(self, row: tuple) -> tuple | None:
        """The common case in few operations; anything unusual (None) takes `_checked`, which
        names the problem. NaN fails every comparison, so range checks also refuse it."""
        _, key, device_id, _, device_ts, received, time_flag, text, _ = row
        d = _loads(text)
        lat = d["lat"]
        lon = d["lon"]
        speed = d.get("speed_kmh")
        heading = d.get("heading")
        hdop = d.get("hdop")
        sats = d.get("sats")
        valid = d.get("valid", True)
        source = d.get("source", "json")
        if not (
            -90.0 <= lat <= 90.0
            and -180.0 <= lon <= 180.0
            and 0.0 <= received < MAX_EPOCH
            and (device_ts is None or 0.0 <= device_ts < MAX_EPOCH)
            and (speed is None or 0.0 <= speed <= 2000.0)
            and (heading is None or -360.0 <= heading <= 360.0)
            and (hdop is None or 0.0 <= hdop <= 1000.0)
            and (sats is None or (type(sats) is int and 0 <= sats <= 1000))
            and type(valid) is bool
            and type(source) is str
        ):
            return None
        received_at = _dt(received, UTC)
        if device_ts is None:
            device_at = None
            ts, at = received, received_at
        else:
            device_at = _dt(device_ts, UTC)
            ts, at = (device_ts, device_at) if time_flag == "ok" else (received, received_at)
        step = self._step(device_id, ts, lat, lon) if valid else None
        return (
            at, key, device_id, device_at, received_at, time_flag,
            lat, lon, speed, heading, hdop, sats, valid, source, step,
        )  # fmt: skip

    def _checked(self, row: tuple) -> tuple[str, tuple]:
        _, key, device_id, kind, device_ts, received_ts, time_flag, text, jpeg_len = row
        table = READING_TABLE.get(kind)
        if table is None:
            raise Reject("unknown_kind", f"reading kind {kind!r} has no table")
        received = _epoch(received_ts, "received_ts")
        if device_ts is not None:
            device_ts = _epoch(device_ts, "device_ts")
        ts = device_ts if time_flag == "ok" and device_ts is not None else received
        d = _json(text, "reading data")
        head = (
            _dt(ts, UTC),
            _text(key, "key"),
            _text(device_id, "device_id"),
            None if device_ts is None else _dt(device_ts, UTC),
            _dt(received, UTC),
            time_flag,
        )
        if table == "gps_fixes":
            lat = _num(d, "lat", -90.0, 90.0)
            lon = _num(d, "lon", -180.0, 180.0)
            sats = d.get("sats")
            if sats is not None and (not isinstance(sats, int) or not 0 <= sats <= 1000):
                raise Reject("out_of_range", f"sats {sats!r} is not a count of satellites")
            valid = bool(d.get("valid", True))
            return table, (
                *head,
                lat,
                lon,
                _opt(d, "speed_kmh", 0.0, 2000.0),
                _opt(d, "heading", -360.0, 360.0),
                _opt(d, "hdop", 0.0, 1000.0),
                sats,
                valid,
                _text(d.get("source", "json"), "source"),
                self._step(device_id, ts, lat, lon) if valid else None,
            )
        if table == "geomag_fields":
            return table, (
                *head,
                self.bays.get(device_id),
                _num(d, "x", -1e4, 1e4),
                _num(d, "y", -1e4, 1e4),
                _num(d, "z", -1e4, 1e4),
            )
        if table == "geomag_states":
            occupied = d.get("occupied")
            if not isinstance(occupied, bool):
                raise Reject("wrong_type", f"occupied is not true/false ({occupied!r})")
            return table, (*head, self.bays.get(device_id), occupied)
        if table == "drone_telemetry":
            return table, (
                *head,
                _num(d, "lat", -90.0, 90.0),
                _num(d, "lon", -180.0, 180.0),
                _num(d, "alt_m", -1000.0, 100_000.0),
                _opt(d, "heading", -360.0, 360.0),
                _opt(d, "gimbal_pitch", -360.0, 360.0),
            )
        if table == "metrics":
            name, unit = d.get("name"), d.get("unit", "")
            if not isinstance(name, str) or not name or not isinstance(unit, str):
                raise Reject("wrong_type", f"metric name/unit are not text ({name!r}, {unit!r})")
            return table, (*head, name, _num(d, "value", -1e15, 1e15), unit)
        return table, (
            *head,
            int(_num(d, "width", 1, 1_000_000)),
            int(_num(d, "height", 1, 1_000_000)),
            jpeg_len,
        )

    def _step(self, device_id: str, ts: float, lat: float, lon: float) -> float | None:
        previous = self.last_fix.get(device_id)
        if previous is not None and ts <= previous[0]:
            return None  # late or repeated fix: leave the track as it was
        self.last_fix[device_id] = (ts, lat, lon)
        if previous is None or ts - previous[0] > MAX_STEP_GAP_S:
            return None
        # equirectangular: for steps of metres to a few km the error is far below GPS noise
        dx = (lon - previous[2]) * _cos(_radians((lat + previous[1]) * 0.5))
        dy = lat - previous[1]
        return _M_PER_DEGREE * _sqrt(dx * dx + dy * dy)


class _Stateless:
    SELECT: str

    def select(self, tables: set[str]) -> str:
        return self.SELECT

    def snapshot(self) -> None:
        return None

    def restore(self, state: None) -> None:
        pass


class ObservationConverter(_Stateless):
    SELECT = (
        "SELECT seq, key, last_seen, kind, device_id, data FROM observations"
        " WHERE seq > ? ORDER BY seq LIMIT ?"
    )

    @staticmethod
    def key_of(row: tuple) -> str:
        return f"{row[1]}@{row[2]!r}"

    def convert(self, row: tuple) -> tuple[str, tuple]:
        _, key, last_seen, kind, device_id, text = row
        d = _json(text, "observation data")
        location = d.get("location") or {}
        if not isinstance(location, dict):
            raise Reject("wrong_type", "location is not an object")
        lon = _opt(location, "lon", -180.0, 180.0)
        lat = _opt(location, "lat", -90.0, 90.0)
        return "observations", (
            _dt(_epoch(last_seen, "last_seen"), UTC),
            _text(key, "key"),
            _iso_time(d.get("first_seen"), "first_seen"),
            _text(kind, "kind"),
            _text(device_id, "device_id"),
            _text(d.get("subject"), "subject"),
            _text(d.get("subject_id"), "subject_id"),
            _text(d.get("zone_id"), "zone_id"),
            _text(d.get("zone_kind"), "zone_kind"),
            _text(d.get("state"), "state"),
            lon,
            lat,
            d,
        )


@dataclass
class CaseEventConverter(_Stateless):
    """`case_events` of the evidence case store. Rule, category and zone come from the event's
    data when it has them, else from the case's row in `cases` (when the store has that table)."""

    origin: str

    SELECT = (
        "SELECT seq, case_id, event, at, data, NULL, NULL, NULL FROM case_events"
        " WHERE seq > ? ORDER BY seq LIMIT ?"
    )
    SELECT_WITH_CASES = (
        "SELECT e.seq, e.case_id, e.event, e.at, e.data, c.rule_id, c.category,"
        " CASE WHEN json_valid(c.violation) THEN json_extract(c.violation, '$.zone_id') END"
        " FROM case_events e LEFT JOIN cases c ON c.case_id = e.case_id"
        " WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
    )

    def select(self, tables: set[str]) -> str:
        return self.SELECT_WITH_CASES if "cases" in tables else self.SELECT

    @staticmethod
    def key_of(row: tuple) -> str:
        return f"{row[1]}|{row[2]}|{row[3]!r}"

    def convert(self, row: tuple) -> tuple[str, tuple]:
        _, case_id, event, at, text, rule_id, category, zone_id = row
        if not case_id or not event:
            raise Reject("missing_field", "case_id and event are required")
        if text is None:
            text = "{}"
        d = _json(text, "case event data")
        violation = d.get("violation") if isinstance(d.get("violation"), dict) else {}
        case = {"rule_id": rule_id, "category": category, "zone_id": zone_id}

        def pick(name: str) -> str | None:
            return _text(d.get(name, violation.get(name, case[name])), name)

        return "case_events", (
            _dt(_epoch(at, "at"), UTC),
            _text(case_id, "case_id"),
            _text(event, "event"),
            self.origin,
            pick("rule_id"),
            pick("category"),
            pick("zone_id"),
            d,
        )
