"""Rule files: the YAML operators write, its pydantic model, loading and cross-checks.

A rule file holds one rule (a mapping with `id`) or several under `rules:`. Every error names
file, line and field and says what would be valid; names of zones and devices are checked
against devices.yaml so a typo fails at `check`, not silently in the street.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from detectors.observation import ObservationKind
from ingest.config import SafeId, SiteConfig, Strict, ZoneKind
from ingest.yamlsource import ConfigError, YamlDocument, format_loc, load_yaml, validate
from rules.violation import EvidenceSpec

_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^(?:{_NUM}d)?(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?$")
DURATION_HINT = "expected a duration like 30s, 5m, 1h30m, 2d or a number of seconds"


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `1h30m`, `2d`, `90` (seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").lower()
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(DURATION_HINT)
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ValueError(DURATION_HINT)
    if not (0 <= seconds < 10 * 365 * 86400):
        raise ValueError(f"{DURATION_HINT}; it must be 0 or more")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as `30s`, `5m`, `1h30m` or a plain number of seconds."""


def _listify(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [value]
    return value


Names = Annotated[list[str], BeforeValidator(_listify)]
"""One name or a list of names."""

KNOWN_SUBJECTS = (
    "person",
    "bicycle",
    "motorcycle",
    "tricycle",
    "scooter",
    "car",
    "bus",
    "truck",
    "van",
    "vehicle",
    "drone",
    "goods",
    "stall",
    "umbrella",
    "cart",
    "bay",
    "device",
)
"""What detectors report as `subject` (GPS `vehicle`, geomagnetic `car`, common camera classes);
cameras add the subjects their `detect.classes` map to (see `known_subjects`)."""


def known_subjects(config: SiteConfig) -> list[str] | None:
    """Subjects a rule may name on this site; None when a camera reports its model's own class
    names (a `detect` without `classes`), which cannot be known before the model loads."""
    known = list(KNOWN_SUBJECTS)
    for device in config.devices:
        detect = getattr(device, "detect", None)
        if detect is None:
            continue
        if not detect.classes:
            return None
        known += [s for s in detect.classes.values() if s not in known]
    return known


DEFAULT_STATES: dict[ObservationKind, tuple[str, ...] | None] = {
    ObservationKind.OCCUPANCY: ("occupied",),
    ObservationKind.GEOFENCE: ("enter", "inside"),
    ObservationKind.OFF_ROUTE: ("off",),
    ObservationKind.SPEEDING: ("over",),
    ObservationKind.PRESENCE: None,
    ObservationKind.DEVICE_HEALTH: None,
}
"""What a clause matches when it names no `state`; another state of the same subject closes it."""

KNOWN_STATES: dict[ObservationKind, tuple[str, ...]] = {
    ObservationKind.OCCUPANCY: ("occupied", "vacant"),
    ObservationKind.GEOFENCE: ("enter", "inside", "exit"),
    ObservationKind.OFF_ROUTE: ("off", "back"),
    ObservationKind.SPEEDING: ("over", "ok"),
}

DEFAULT_LOST_AFTER: dict[ObservationKind, float | None] = {
    ObservationKind.PRESENCE: 30.0,
    ObservationKind.SPEEDING: 30.0,
}
"""Kinds whose detectors keep re-reporting a live subject: silence this long means gone.
The others are state-driven (occupied until vacant, off route until back)."""


class Severity(StrEnum):
    INFO = "info"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Dedup(StrEnum):
    SUBJECT = "subject"
    """One case per subject (a parked bicycle, a car in a bay)."""
    ZONE = "zone"
    """One case per zone while anything keeps it in violation (a vending pitch, a shop front)."""


class Party(StrEnum):
    NONE = "none"
    MERCHANT = "merchant"
    """The merchant of the shop-front zone where it happened (devices.yaml zones[].merchant)."""


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _parse_window(text: Any) -> tuple[time, time]:
    if not isinstance(text, str) or (match := _WINDOW.fullmatch(text.strip())) is None:
        raise ValueError("expected a time-of-day window like '07:00-22:00' (or '22:00-06:00')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 == 0:
        h2, m2 = 0, 0
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError("hours are 00-23 (24:00 as an end), minutes 00-59")
    return time(h1, m1), time(h2, m2)


class Schedule(Strict):
    """When the rule applies, in the site's timezone unless `timezone` says otherwise."""

    windows: list[str] = Field(default_factory=lambda: ["00:00-24:00"])
    """Time-of-day windows; a window whose end is before its start runs over midnight."""
    weekdays: Names = Field(default_factory=lambda: list(_WEEKDAYS))
    """Days the window starts on: mon tue wed thu fri sat sun."""
    timezone: str | None = None

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for item in value:
            _parse_window(item)
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        out = []
        for day in value:
            key = str(day).strip().lower()[:3]
            if key not in _WEEKDAYS:
                raise ValueError(_unknown("weekday", str(day), list(_WEEKDAYS)))
            out.append(key)
        return out

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown IANA timezone {value!r} (e.g. 'Asia/Shanghai')"
                ) from None
        return value


class Clause(Strict):
    """One kind of observation: what, where, in which state, how many, how long."""

    kind: ObservationKind
    subject: Names = Field(default_factory=list)
    """Subject classes (bicycle, car, goods, ...); empty: any."""
    zone: Names = Field(default_factory=list)
    """Zone ids (camera/GPS zones, geomagnetic bays); empty: any."""
    zone_kind: Names = Field(default_factory=list)
    """Zone kinds (no_parking, sidewalk, shopfront, fire_lane, restricted, geofence); empty: any."""
    device: Names = Field(default_factory=list)
    """Device ids; empty: any."""
    state: Names = Field(default_factory=list)
    """States that count (occupied, enter/inside, off, over, ...); empty: the kind's default."""
    min_count: int = Field(1, ge=1, le=1000)
    """How many distinct matching subjects, each past its dwell, at once in one zone."""
    dwell: Duration = 0.0
    """How long each subject stays before it counts."""
    lost_after: Duration | None = None
    """Silence after which a re-reported subject (camera presence) counts as gone."""

    @field_validator("zone_kind")
    @classmethod
    def _zone_kinds(cls, value: list[str]) -> list[str]:
        known = [k.value for k in ZoneKind]
        for item in value:
            if item not in known:
                raise ValueError(_unknown("zone kind", item, known))
        return value

    @model_validator(mode="after")
    def _states(self) -> Clause:
        known = KNOWN_STATES.get(self.kind)
        if known:
            for item in self.state:
                if item not in known:
                    raise ValueError(
                        "state: " + _unknown(f"{self.kind.value} state", item, list(known))
                    )
        return self

    @property
    def states(self) -> frozenset[str] | None:
        if self.state:
            return frozenset(self.state)
        default = DEFAULT_STATES.get(self.kind)
        return None if default is None else frozenset(default)

    @property
    def gone_after_s(self) -> float | None:
        return self.lost_after if self.lost_after is not None else DEFAULT_LOST_AFTER.get(self.kind)


class Condition(Clause):
    """A single clause, or `all`/`any` of clauses (possibly on different devices)."""

    kind: ObservationKind | None = None  # type: ignore[assignment]
    all: list[Clause] | None = None
    """Every clause true within `within` of each other (occupied bay AND a car on camera)."""
    any: list[Clause] | None = None
    """Any one clause."""
    within: Duration = 30.0
    """For `all`: how close in time the clauses must hold."""
    places: list[Names] = Field(default_factory=list)
    """For `all`: zones that watch the same spot, e.g. [[fire-lane-1, cam-bay-1]] (a bay and
    the camera zone over it). Clauses must match within one place; a zone in no group is a
    place of its own, so without `places` all clauses must match in the same zone."""

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        given = [name for name in ("kind", "all", "any") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition is one clause (with `kind`) or `all: [...]` or `any: [...]`"
                f"; got {', '.join(given) or 'none of them'}"
            )
        if self.kind is None:
            own = self.model_fields_set & set(Clause.model_fields)
            if own:
                raise ValueError(
                    f"{', '.join(sorted(own))} belong inside each clause of all/any, not beside it"
                )
        if (self.all is not None and not self.all) or (self.any is not None and not self.any):
            raise ValueError("all/any needs at least one clause")
        return self

    def clauses(self) -> list[Clause]:
        if self.all is not None:
            return list(self.all)
        if self.any is not None:
            return list(self.any)
        return [Clause.model_validate(self.model_dump(include=set(Clause.model_fields)))]


class Evidence(Strict):
    pre: Duration = 10.0
    """Video before the moment the rule fired."""
    post: Duration = 5.0
    snapshots: bool = True
    clip: bool = True
    sensor_series: Duration = 600.0
    """Sensor history (geomagnetic field, GPS track) before the violation to include."""

    def spec(self) -> EvidenceSpec:
        return EvidenceSpec(self.pre, self.post, self.snapshots, self.clip, self.sensor_series)


class Rule(Strict):
    id: SafeId
    name: str = Field(min_length=1)
    category: str = Field(min_length=1)
    """The enforcement item, e.g. 市容管理/非机动车乱停放."""
    severity: Severity = Severity.MINOR
    enabled: bool = True
    condition: Condition
    schedule: Schedule | None = None
    cooldown: Duration = 0.0
    """After a case opens, no new case for the same situation (see dedup) for this long."""
    dedup: Dedup = Dedup.SUBJECT
    dispose_within: Duration | None = None
    """Disposal deadline the case carries (e.g. 15m for stray non-motor vehicles)."""
    party: Party = Party.NONE
    evidence: Evidence = Evidence()


class RuleFile(Strict):
    rules: list[Rule]


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    windows: tuple[tuple[int, int], ...]
    """(start, end) in minutes of the day; end <= start runs over midnight."""
    weekdays: frozenset[int]
    tz: tzinfo

    @classmethod
    def of(cls, schedule: Schedule | None, site_tz: tzinfo) -> CompiledSchedule | None:
        if schedule is None:
            return None
        windows = []
        for text in schedule.windows:
            a, b = _parse_window(text)
            windows.append((a.hour * 60 + a.minute, b.hour * 60 + b.minute))
        days = frozenset(_WEEKDAYS.index(d) for d in schedule.weekdays)
        tz = ZoneInfo(schedule.timezone) if schedule.timezone else site_tz
        return cls(tuple(windows), days, tz)

    def active(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute + local.second / 60
        day = local.weekday()
        for start, end in self.windows:
            if start < end:
                if day in self.weekdays and start <= minute < end:
                    return True
            else:  # over midnight (or all day when start == end == 0)
                if day in self.weekdays and minute >= start:
                    return True
                if (day - 1) % 7 in self.weekdays and minute < end:
                    return True
        return False

    def next_active(self, at: datetime, horizon_s: float = 8 * 86400) -> datetime | None:
        """The first moment at or after `at` inside the schedule (None within the horizon)."""
        if self.active(at):
            return at
        local = at.astimezone(self.tz)
        day0 = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        best: datetime | None = None
        for offset in range(9):
            for start, _end in self.windows:
                naive = day0 + timedelta(days=offset, minutes=start)
                candidate = naive.replace(tzinfo=self.tz)
                if candidate.astimezone(at.tzinfo) <= at:
                    continue
                if self.active(candidate) and (best is None or candidate < best):
                    best = candidate
            if best is not None:
                break
        if best is None or (best - at).total_seconds() > horizon_s:
            return None
        return best.astimezone(at.tzinfo)


@dataclass(frozen=True)
class LoadedRule:
    rule: Rule
    source: str
    line: int | None
    schedule: CompiledSchedule | None
    places: dict[str, int]
    """Zone id -> place index, for `all` conditions with places."""

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[LoadedRule, ...]
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> LoadedRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def _unknown(what: str, value: str, known: list[str]) -> str:
    message = f"unknown {what} {value!r}"
    if what in ("zone", "device"):
        message += " (not in devices.yaml)"
    close = difflib.get_close_matches(str(value), known, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; expected one of: {', '.join(sorted(known)) or 'none defined'}"


def rule_files(rules_dir: Path) -> list[Path]:
    if rules_dir.is_file():
        return [rules_dir]
    return sorted(p for p in rules_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_rules(rules_dir: str | Path, config: SiteConfig) -> RuleSet:
    """Every `*.yaml`/`*.yml` in `rules_dir` (or one file), validated against `config`.

    Raises ConfigError listing every problem of every file as `file:line: field: why`.
    """
    rules_dir = Path(rules_dir)
    if not rules_dir.exists():
        raise ConfigError([f"{rules_dir}: no such rules folder or file"])
    problems: list[str] = []
    loaded: list[LoadedRule] = []
    files = rule_files(rules_dir)
    for path in files:
        try:
            loaded += _load_file(path, config)
        except ConfigError as exc:
            problems += exc.problems
    first: dict[str, str] = {}
    for item in loaded:
        where = f"{item.source}:{item.line}" if item.line else item.source
        if item.id in first:
            problems.append(f"{where}: id: rule id {item.id!r} also defined at {first[item.id]}")
        first.setdefault(item.id, where)
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(r for r in loaded if r.rule.enabled), tuple(str(p) for p in files))


def _load_file(path: Path, config: SiteConfig) -> list[LoadedRule]:
    doc = load_yaml(path)
    data = doc.data
    if data is None:
        return []
    if isinstance(data, dict) and "rules" not in data and "id" in data:
        doc = _rebase(doc)
    elif not isinstance(data, dict) or "rules" not in data:
        raise ConfigError(
            [
                f"{path}:1: expected one rule (a mapping with id, name, condition, ...) "
                "or a list of them under 'rules:'"
            ]
        )
    if isinstance(doc.data, dict) and doc.data.get("rules") is None:
        return []
    problems = [
        f"{doc.where(loc)}: {_display(doc, loc)}: {why}" for loc, why in _name_checks(doc, config)
    ]
    try:
        parsed: RuleFile = validate(doc, RuleFile)
    except ConfigError as exc:
        found = exc.problems
        if getattr(doc, "single", False):
            found = [p.replace(": rules[0].", ": ", 1) for p in found]
        raise ConfigError(sorted(problems + found, key=_line_key)) from None
    out = []
    for index, rule in enumerate(parsed.rules):
        for loc, why in _cross_check(rule, config):
            full = ("rules", index, *loc)
            problems.append(f"{doc.where(full)}: {_display(doc, full)}: {why}")
        places = {}
        for p_index, group in enumerate(rule.condition.places):
            for zone in group:
                places[zone] = p_index
        out.append(
            LoadedRule(
                rule=rule,
                source=str(path),
                line=doc.line_of(("rules", index)),
                schedule=CompiledSchedule.of(rule.schedule, config.site.tz),
                places=places,
            )
        )
    if problems:
        raise ConfigError(sorted(problems, key=_line_key))
    return out


def _line_key(problem: str) -> int:
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _rebase(doc: YamlDocument) -> YamlDocument:
    """A file holding one rule reads as `rules: [that rule]`; lines and locations stay right."""
    lines = {("rules", 0, *path): line for path, line in doc.lines.items()}
    lines[()] = 1
    rebased = YamlDocument(doc.source, {"rules": [doc.data]}, lines)
    rebased.single = True  # type: ignore[attr-defined]
    return rebased


def _display(doc: YamlDocument, loc: tuple[str | int, ...]) -> str:
    if getattr(doc, "single", False) and loc[:2] == ("rules", 0):
        loc = loc[2:]
    return format_loc(loc)


def _known_zones(config: SiteConfig) -> dict[str, str | None]:
    """Zone id -> kind: every device's zones, and every geomagnetic sensor's bay."""
    zones: dict[str, str | None] = {}
    for device in config.devices:
        for zone in device.zones:
            zones[zone.id] = zone.kind.value
        if device.bay:
            kind = getattr(device, "bay_kind", None)
            zones.setdefault(device.bay, None if kind is None else str(kind.value))
    return zones


def _name_checks(doc: YamlDocument, config: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Zones and devices named in the file must exist in devices.yaml. Runs on the raw data, so
    a wrong name is reported together with any other problem of the file."""
    zones = _known_zones(config)
    devices = [d.id for d in config.devices]
    subjects = known_subjects(config)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
    if not isinstance(rules, list):
        return problems

    def names(where: tuple[str | int, ...], value: Any, known: list[str], what: str) -> None:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return
        for i, name in enumerate(items):
            if isinstance(name, str) and name not in known:
                loc = (*where, i) if not isinstance(value, str) else where
                problems.append((loc, _unknown(what, name, known)))

    for index, rule in enumerate(rules):
        condition = rule.get("condition") if isinstance(rule, dict) else None
        if not isinstance(condition, dict):
            continue
        base: tuple[str | int, ...] = ("rules", index, "condition")
        clauses: list[tuple[tuple[str | int, ...], Any]] = [(base, condition)]
        for key in ("all", "any"):
            if isinstance(condition.get(key), list):
                clauses += [((*base, key, i), c) for i, c in enumerate(condition[key])]
        for where, clause in clauses:
            if isinstance(clause, dict):
                names((*where, "zone"), clause.get("zone"), list(zones), "zone")
                names((*where, "device"), clause.get("device"), devices, "device")
                if subjects is not None:
                    names((*where, "subject"), clause.get("subject"), subjects, "subject")
        places = condition.get("places")
        if isinstance(places, list):
            for p_index, group in enumerate(places):
                names((*base, "places", p_index), group, list(zones), "zone")
    return problems


def _cross_check(rule: Rule, config: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """What needs the whole rule: party merchant needs shop-front zones only."""
    zones = _known_zones(config)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    condition = rule.condition
    if condition.kind is not None:
        clauses = [(("condition",), condition.clauses()[0])]
    else:
        key = "all" if condition.all is not None else "any"
        clauses = [(("condition", key, i), c) for i, c in enumerate(condition.clauses())]
    if rule.party is Party.MERCHANT:
        shopfronts = {z for z, kind in zones.items() if kind == ZoneKind.SHOPFRONT.value}
        if not shopfronts:
            problems.append((("party",), "merchant needs shopfront zones in devices.yaml"))
        for _, clause in clauses:
            by_zone = bool(clause.zone) and set(clause.zone) <= shopfronts
            by_kind = clause.zone_kind == [ZoneKind.SHOPFRONT.value]
            if not (by_zone or by_kind):
                problems.append(
                    (
                        ("party",),
                        "merchant is the merchant of a shopfront zone, but the condition "
                        "matches other zones too; add zone_kind: shopfront (or name shopfront "
                        "zones)",
                    )
                )
                break
    return problems
