"""Cooldown and dedup: whether a met condition opens a violation, and building it.

A rule's situations are keyed per subject or per zone (`dedup: zone`, and any min_count). While
a situation is active (some member still open), a new match joins it rather than opening
another violation; after it opened one, the rule's `cooldown` holds for that key. The cooldowns
survive a rule edit and, through `Engine.remember_opened`, a restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from detectors.observation import Observation
from rules.clearance import OpenedSituation
from rules.schema import Dedup, Party, Review
from rules.violation import Violation

if TYPE_CHECKING:
    from rules.engine import Engine
    from rules.matching import _Compiled
    from rules.situations import Identity, _Track


@dataclass(slots=True)
class _DedupState:
    active: set[tuple[int, Identity]] = field(default_factory=set)
    last_opened: float = -math.inf
    opened: OpenedSituation | None = None
    """The violation the active situation opened: its end is a clearance (`Engine.clearances`)."""


class _Dedup:
    """Engine part: `_fire` (dedup, cooldown) and `_violation` (what goes into the case)."""

    __slots__ = ()

    def _fire(
        self: Engine,
        rule: _Compiled,
        r_index: int,
        at: float,
        members: list[tuple[int, _Track]],
        anchor: _Track,
    ) -> list[Violation]:
        per_zone = rule.rule.dedup is Dedup.ZONE or any(rule.min_count[c] > 1 for c, _ in members)
        key = ("zone", anchor.zone or "-") if per_zone else ("subject", "/".join(anchor.identity))
        state = rule.dedup.get(key)
        if state is None:
            state = rule.dedup[key] = _DedupState()
        for _, track in members:
            track.fired = True
            track.dedup_key = key
        live_before = bool(state.active)
        for c_index, track in members:
            if track.open:
                state.active.add((c_index, track.identity))
        if live_before:
            self._counts["suppressed_same_situation"] += 1
            return []
        if at < state.last_opened + rule.cooldown:
            self._counts["suppressed_cooldown"] += 1
            # the very violation opened before a restart (`remember_opened`), found again: its
            # case is in the store, and its end is still a clearance; any other one has no case
            again = abs(at - state.last_opened) < 0.0005
            state.opened = (
                _opened(self._violation(rule, at, members, anchor, key)) if again else None
            )
            return []
        state.last_opened = at
        self._counts["violations"] += 1
        violation = self._violation(rule, at, members, anchor, key)
        state.opened = _opened(violation)
        return [violation]

    def _violation(
        self: Engine,
        rule: _Compiled,
        at: float,
        members: list[tuple[int, _Track]],
        anchor: _Track,
        key: tuple[str, str],
    ) -> Violation:
        spec = rule.rule
        observations: list[Observation] = []
        devices: list[str] = []
        for _, track in members:
            for obs in track.observations:
                if obs not in observations:
                    observations.append(obs)
            if track.identity[0] not in devices:
                devices.append(track.identity[0])
        observations.sort(key=lambda o: o.last_seen)
        latest = anchor.observations[-1]
        location = latest.location or self._device_locations.get(anchor.identity[0])
        party = None
        if spec.party is Party.MERCHANT and anchor.zone is not None:
            party = self._merchants.get(anchor.zone)
        first = min(t.first_seen for _, t in members)
        last = max(max(t.last_seen if t.open else t.ended_at for _, t in members), at)
        opened = datetime.fromtimestamp(at, UTC)
        thresholds: dict[str, Any] = {
            "dwell_s": [c.dwell for c in rule.clauses] if len(rule.clauses) > 1 else rule.dwell[0],
            "min_count": rule.min_count[0] if len(rule.clauses) == 1 else rule.min_count,
            "cooldown_s": spec.cooldown,
            "dedup": spec.dedup.value,
            "count": len({t.identity for _, t in members}),
        }
        if rule.all_mode:
            thresholds["within_s"] = rule.within
        if spec.schedule is not None:
            thresholds["schedule"] = spec.schedule.model_dump()
        return Violation(
            rule_id=spec.id,
            rule_name=spec.name,
            category=spec.category,
            severity=spec.severity.value,
            site_id=self.site_id,
            situation=f"{key[0]}:{key[1]}",
            opened_at=opened,
            window_start=datetime.fromtimestamp(first, UTC),
            window_end=datetime.fromtimestamp(last, UTC),
            devices=tuple(devices),
            subject=anchor.subject,
            subject_id=anchor.identity[1],
            zone_id=anchor.zone,
            zone_kind=anchor.zone_kind,
            party=party,
            location=location,
            dispose_within=None
            if spec.dispose_within is None
            else timedelta(seconds=spec.dispose_within),
            escalate=tuple(spec.escalate),
            review_required=spec.review is Review.REQUIRED,
            repeat_within=None
            if spec.repeat_within is None
            else timedelta(seconds=spec.repeat_within),
            evidence=spec.evidence.spec(),
            thresholds=thresholds,
            observations=tuple(observations),
        )


def _opened(v: Violation) -> OpenedSituation:
    return OpenedSituation(
        v.rule_id, v.violation_id, v.situation, v.opened_at, v.devices, v.zone_id, v.location
    )
