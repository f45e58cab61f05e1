"""Backtesting rules over a recording, and scoring them against labelled incidents.

Readings go through `SensorDetectors` again (so detector settings in devices.yaml are tuned
too); recorded observations of the kinds sensors produce are then skipped for devices whose
readings are in the recording, so nothing counts twice. Camera observations are used as they
were recorded. Event time drives everything: every `tick_s` of event time the detectors tick and
the engine advances, as the live pipeline does.

Labels (`--labels`) are the true incidents, in YAML:

    incidents:
      - rule: fire-lane-occupied
        zone: fire-lane-1                 # optional: zone id (or bay) the case must name
        subject_id: "17"                  # optional
        start: 2026-11-23T10:02:00+08:00
        end: 2026-11-23T10:40:00+08:00

or CSV with the header `rule,zone,subject_id,start,end` (empty cells for "any"). A violation
matches an incident of its rule (and zone/subject when given) when it opens between start and
end, give or take the tolerance; each incident matches one violation at most, so a second case
for one incident counts against precision.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from detectors.observation import Observation, ObservationKind
from ingest.config import SiteConfig, Strict
from ingest.readings import Reading, Stream
from ingest.yamlsource import ConfigError, load_yaml, read_config_bytes, validate
from rules.engine import Engine
from rules.schema import RuleSet
from rules.violation import Violation

SENSOR_KINDS = frozenset(
    {
        ObservationKind.OCCUPANCY,
        ObservationKind.GEOFENCE,
        ObservationKind.SPEEDING,
        ObservationKind.OFF_ROUTE,
        ObservationKind.DEVICE_HEALTH,
        ObservationKind.METRIC,
    }
)
SENSOR_STREAMS = frozenset({Stream.GPS, Stream.GEOMAG, Stream.TELEMETRY, Stream.METRICS})


@dataclass
class ReplayResult:
    violations: list[Violation]
    stats: Counter[str]
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    scores: Scores | None = None


def replay(
    items: Iterable[Reading | Observation],
    rules: RuleSet,
    config: SiteConfig,
    *,
    sensors: str = "readings",
    tolerance_s: float = 10.0,
    tick_s: float = 1.0,
    sensor_devices: Iterable[str] | None = None,
) -> ReplayResult:
    """Run `items` (recorded order) through detectors and the engine.

    `sensors="readings"` re-runs the sensor detectors on recorded readings;
    `sensors="recorded"` ignores readings and uses recorded sensor observations as they are.
    `sensor_devices` (from `sensor_devices_of` on a first pass) lets `items` be a stream read
    once; without it the items are held in memory to find them.
    """
    if sensors not in ("readings", "recorded"):
        raise ValueError("sensors is 'readings' or 'recorded'")
    engine = Engine(rules, config, tolerance_s=tolerance_s)
    engine.thresholds.count_unheard = False  # a recording need not hold every sensor
    stats: Counter[str] = Counter()
    detectors = None
    from_readings: set[str] = set()
    if sensors == "readings":
        if sensor_devices is None:
            items = list(items)
            sensor_devices = sensor_devices_of(items)
        from_readings = set(sensor_devices)
        if from_readings:
            from detectors.sensors import SensorDetectors

            detectors = SensorDetectors(config)
    violations: list[Violation] = []
    first: datetime | None = None
    clock: datetime | None = None
    next_tick: datetime | None = None
    step = timedelta(seconds=tick_s)

    def tick_to(now: datetime) -> None:
        nonlocal next_tick
        if next_tick is None:
            next_tick = now + step
            return
        while next_tick <= now:
            if detectors is not None:
                for obs in detectors.tick(next_tick):
                    stats["observations_from_readings"] += 1
                    violations.extend(engine.process(obs))
            violations.extend(engine.advance(next_tick))
            next_tick += step

    for item in items:
        if isinstance(item, Reading):
            stats["readings"] += 1
            ts = item.event_ts
            if detectors is None or item.stream not in SENSOR_STREAMS:
                continue
            observations = detectors.process(item)
            stats["observations_from_readings"] += len(observations)
        else:
            stats["observations_recorded"] += 1
            ts = item.last_seen
            if item.kind in SENSOR_KINDS and item.device_id in from_readings:
                stats["observations_regenerated"] += 1
                continue
            observations = [item]
        if first is None or ts < first:
            first = ts
        if clock is None or ts > clock:
            clock = ts
            tick_to(ts)
        for obs in observations:
            violations.extend(engine.process(obs))
    if clock is not None:
        tick_to(clock + timedelta(seconds=tolerance_s))
        violations.extend(engine.advance(clock + timedelta(seconds=tolerance_s)))
    stats.update({f"engine_{k}": v for k, v in engine.stats.items()})
    if detectors is not None:
        stats.update({f"sensors_{k}": v for k, v in detectors.stats.items()})
    violations.sort(key=lambda v: (v.opened_at, v.rule_id, v.situation))
    return ReplayResult(violations, stats, first, clock)


def sensor_devices_of(items: Iterable[Reading | Observation]) -> set[str]:
    """Devices whose sensor readings are in the recording (their observations are re-made)."""
    return {i.device_id for i in items if isinstance(i, Reading) and i.stream in SENSOR_STREAMS}


# ---- labels and scores ----------------------------------------------------------------------


class Incident(Strict):
    rule: str = Field(min_length=1)
    zone: str | None = None
    subject_id: str | None = None
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Incident:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class Labels(Strict):
    incidents: list[Incident]


def load_labels(path: str | Path) -> list[Incident]:
    """Incidents from a YAML (`incidents: [...]`) or CSV (`rule,zone,subject_id,start,end`) file;
    errors name file, line and field."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return _labels_csv(path)
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError([f"{path}:1: expected 'incidents:' with a list of incidents"])
    labels: Labels = validate(doc, Labels)
    return labels.incidents


def _labels_csv(path: Path) -> list[Incident]:
    try:
        text = read_config_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    rows = csv.DictReader(text.splitlines())
    wanted = {"rule", "start", "end"}
    header = set(rows.fieldnames or ())
    if not wanted <= header:
        raise ConfigError(
            [
                f"{path}:1: header needs rule,start,end (and optionally zone,subject_id); "
                f"got {','.join(rows.fieldnames or [])}"
            ]
        )
    extra = header - wanted - {"zone", "subject_id"}
    if extra:
        raise ConfigError([f"{path}:1: unknown column(s) {', '.join(sorted(extra))}"])
    problems = []
    incidents = []
    for number, row in enumerate(rows, start=2):
        data: dict[str, Any] = {k: (v or None) for k, v in row.items() if k is not None}
        try:
            incidents.append(Incident.model_validate(data))
        except ValidationError as exc:
            for item in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in item["loc"]) or "(row)"
                message = item["msg"].removeprefix("Value error, ")
                problems.append(f"{path}:{number}: {loc}: {message}")
    if problems:
        raise ConfigError(problems)
    return incidents


@dataclass
class RuleScore:
    violations: int = 0
    incidents: int = 0
    matched: int = 0

    @property
    def precision(self) -> float | None:
        return None if self.violations == 0 else self.matched / self.violations

    @property
    def recall(self) -> float | None:
        return None if self.incidents == 0 else self.matched / self.incidents


@dataclass
class Scores:
    total: RuleScore
    per_rule: dict[str, RuleScore]
    matches: list[tuple[int, int]] = field(default_factory=list)
    """(violation index, incident index) pairs."""
    tolerance_s: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        def one(score: RuleScore) -> dict[str, Any]:
            return {
                "violations": score.violations,
                "incidents": score.incidents,
                "matched": score.matched,
                "precision": score.precision,
                "recall": score.recall,
            }

        return {
            "tolerance_s": self.tolerance_s,
            "total": one(self.total),
            "per_rule": {rule: one(s) for rule, s in sorted(self.per_rule.items())},
        }


def score(
    violations: list[Violation], incidents: list[Incident], tolerance_s: float = 60.0
) -> Scores:
    """Match violations to incidents one to one (earliest opening first)."""
    slack = timedelta(seconds=tolerance_s)
    per_rule: dict[str, RuleScore] = {}
    for v in violations:
        per_rule.setdefault(v.rule_id, RuleScore()).violations += 1
    for incident in incidents:
        per_rule.setdefault(incident.rule, RuleScore()).incidents += 1
    taken: set[int] = set()
    matches = []
    order = sorted(range(len(violations)), key=lambda i: violations[i].opened_at)
    for v_index in order:
        v = violations[v_index]
        best = None
        for i_index, incident in enumerate(incidents):
            if i_index in taken or incident.rule != v.rule_id:
                continue
            if incident.zone is not None and incident.zone != v.zone_id:
                continue
            if incident.subject_id is not None and incident.subject_id != v.subject_id:
                continue
            if not (incident.start - slack <= v.opened_at <= incident.end + slack):
                continue
            if best is None or incident.start < incidents[best].start:
                best = i_index
        if best is not None:
            taken.add(best)
            matches.append((v_index, best))
            per_rule[v.rule_id].matched += 1
    total = RuleScore(len(violations), len(incidents), len(matches))
    return Scores(total, per_rule, matches, tolerance_s)
