"""The rule model: what a rule file may say (clauses, conditions, evidence, the rule itself) and
the loaded form the engine runs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from detectors.observation import ObservationKind
from ingest.config import SafeId, Strict, ZoneKind
from ingest.jt808.location import ALARM_NAMES
from rules.fields import Duration, Names, unknown
from rules.schedule import CompiledSchedule, Schedule
from rules.thresholds import Threshold
from rules.violation import EvidenceSpec

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
    "stall_furniture",
    "umbrella",
    "cart",
    "bay",
    "device",
    "segment",
    "sensor",
    "bin",
    "toilet",
    "construction_site",
    "water_gauge",
)
"""What detectors report as `subject` (GPS `vehicle`, geomagnetic `car`, common camera classes);
cameras add the subjects their `detect.classes` map to (see `known_subjects`)."""


DEFAULT_STATES: dict[ObservationKind, tuple[str, ...] | None] = {
    ObservationKind.OCCUPANCY: ("occupied",),
    ObservationKind.GEOFENCE: ("enter", "inside"),
    ObservationKind.OFF_ROUTE: ("off",),
    ObservationKind.SPEEDING: ("over",),
    ObservationKind.PRESENCE: None,
    ObservationKind.DEVICE_HEALTH: None,
    ObservationKind.COVERAGE: ("uncovered",),
    ObservationKind.METRIC: ("over",),
    ObservationKind.VEHICLE_SIGNAL: tuple(sorted(ALARM_NAMES)),
}
"""What a clause matches when it names no `state`; another state of the same subject closes it."""

KNOWN_STATES: dict[ObservationKind, tuple[str, ...]] = {
    ObservationKind.OCCUPANCY: ("occupied", "vacant"),
    ObservationKind.GEOFENCE: ("enter", "inside", "exit"),
    ObservationKind.OFF_ROUTE: ("off", "back"),
    ObservationKind.SPEEDING: ("over", "ok"),
    ObservationKind.COVERAGE: ("partial", "covered", "uncovered", "missed"),
    ObservationKind.METRIC: ("over", "ok"),
}

DEFAULT_LOST_AFTER: dict[ObservationKind, float | None] = {
    ObservationKind.PRESENCE: 30.0,
    ObservationKind.SPEEDING: 30.0,
    ObservationKind.VEHICLE_SIGNAL: 60.0,
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


MERCHANT_GRADES = ("A", "B", "C", "none")
"""Merchant grades a clause may name (devices.yaml merchants[].grade); `none`: the zone has no
merchant, or its merchant no grade."""


class When(Strict):
    """Conditions on the place rather than the observation, e.g. the grade of the zone's
    merchant: `when: {merchant_grade: [C]}` (a closely watched shop gets a shorter dwell)."""

    merchant_grade: Names = Field(min_length=1)

    @field_validator("merchant_grade")
    @classmethod
    def _grades(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in MERCHANT_GRADES:
                raise ValueError(unknown("merchant grade", item, list(MERCHANT_GRADES)))
        return value

    def admits(self, grade: str | None) -> bool:
        return (grade or "none") in self.merchant_grade


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
    when: When | None = None
    threshold: Threshold | None = None
    """For `kind: metric`: the level, rate or silence that makes an episode (rules.thresholds)."""
    """Conditions on the zone's merchant (`merchant_grade`); none: any zone."""

    @field_validator("zone_kind")
    @classmethod
    def _zone_kinds(cls, value: list[str]) -> list[str]:
        known = [k.value for k in ZoneKind]
        for item in value:
            if item not in known:
                raise ValueError(unknown("zone kind", item, known))
        return value

    @model_validator(mode="after")
    def _states(self) -> Clause:
        if (self.kind is ObservationKind.METRIC) != (self.threshold is not None):
            raise ValueError(
                "a `kind: metric` clause names a `threshold:` (and only it does), e.g. "
                "threshold: {metric: fill_pct, above: 90, clear: 80}"
            )
        known = KNOWN_STATES.get(self.kind)
        if known:
            for item in self.state:
                if item not in known:
                    raise ValueError(
                        "state: " + unknown(f"{self.kind.value} state", item, list(known))
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


class Review(StrEnum):
    NONE = "none"
    REQUIRED = "required"


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
    escalate: list[float] = Field(default_factory=lambda: [1.0], min_length=1, max_length=5)
    """Escalation levels as multiples of `dispose_within`: `[1, 2]` escalates a case still open
    at its deadline and again at twice it."""
    review: Review = Review.NONE
    """`required`: the box holds each case for an operator's confirm or reject in the console
    before the case feed sends it."""
    repeat_within: Duration | None = None
    """A situation of this rule that comes back within this long after the box cleared an
    earlier case in the same zone is linked to it as a repeat."""
    party: Party = Party.NONE
    evidence: Evidence = Evidence()

    @field_validator("escalate")
    @classmethod
    def _rising(cls, levels: list[float]) -> list[float]:
        if any(level <= 0 for level in levels) or levels != sorted(set(levels)):
            raise ValueError("escalation levels are positive multiples, rising: e.g. [1, 2]")
        return levels


class RuleFile(Strict):
    rules: list[Rule]


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
