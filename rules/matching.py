"""Which clauses an observation can concern: rules compiled for the hot path, and the index.

A rule is compiled once per load into `_Compiled` (its clauses with their thresholds in lists,
its runtime state: tracks per clause, groups for `all`/min_count, dedup situations). The static
part of a clause (kind, subject, zone, zone kind, device) is matched once per distinct
combination and remembered in the engine's candidate index as `_Slot`s, so `Engine.process`
only looks at the clauses that can concern an observation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.observation import Observation, ObservationKind
from rules.schema import Clause, LoadedRule

if TYPE_CHECKING:
    from rules.dedup import _DedupState
    from rules.engine import Engine
    from rules.situations import Episode, Identity, _Track


class _Slot:
    """One clause of one rule, with what the hot path needs at hand."""

    __slots__ = ("c_index", "dwell", "gone_after", "r_index", "rule", "simple", "states", "tracks")

    def __init__(self, rule: _Compiled, r_index: int, c_index: int) -> None:
        self.rule = rule
        self.r_index = r_index
        self.c_index = c_index
        self.tracks = rule.tracks[c_index]
        self.states = rule.states[c_index]
        self.gone_after = rule.gone_after[c_index]
        self.dwell = rule.dwell[c_index]
        self.simple = not rule.all_mode and rule.min_count[c_index] == 1


class _Compiled:
    """A rule with its clauses and runtime state."""

    __slots__ = (
        "all_mode",
        "clauses",
        "cooldown",
        "dedup",
        "dwell",
        "gone_after",
        "grouped",
        "loaded",
        "min_count",
        "places",
        "rule",
        "states",
        "tracks",
        "within",
    )

    def __init__(self, loaded: LoadedRule) -> None:
        self.loaded = loaded
        self.rule = loaded.rule
        condition = loaded.rule.condition
        self.clauses: list[Clause] = condition.clauses()
        self.all_mode = condition.all is not None
        self.within = condition.within
        self.places = loaded.places
        self.cooldown = loaded.rule.cooldown
        self.dedup: dict[tuple[str, str], _DedupState] = {}
        self.tracks: list[dict[Identity, _Track]] = [{} for _ in self.clauses]
        self.grouped: list[dict[Any, dict[Episode, _Track]] | None] = [
            {} if self.all_mode or c.min_count > 1 else None for c in self.clauses
        ]
        """Per clause that needs it (`all`, min_count): tracks by place/zone."""
        self.states = [c.states for c in self.clauses]
        self.dwell = [
            c.dwell + (c.threshold.extra_dwell_s if c.threshold else 0.0) for c in self.clauses
        ]
        self.min_count = [c.min_count for c in self.clauses]
        self.gone_after = [c.gone_after_s for c in self.clauses]

    def place_of(self, zone: str | None) -> Any:
        """Where clauses of `all` must meet: the zone's group in `places`, else the zone."""
        found = self.places.get(zone or "-")
        return ("zone", zone) if found is None else found


def _static_match(
    clause: Clause,
    obs_kind: Any,
    subject: str,
    zone: str | None,
    zone_kind: str | None,
    device: str,
    grade: str | None = None,
    threshold: str | None = None,
) -> bool:
    """`grade`: of the zone's merchant, for a clause's `when: {merchant_grade: [...]}`;
    `threshold`: the signature a metric episode belongs to (its subject id)."""
    return (
        clause.kind == obs_kind
        and (not clause.subject or subject in clause.subject)
        and (not clause.zone or zone in clause.zone)
        and (not clause.zone_kind or zone_kind in clause.zone_kind)
        and (not clause.device or device in clause.device)
        and (clause.when is None or clause.when.admits(grade))
        and (clause.threshold is None or clause.threshold.signature == threshold)
    )


def merchant_grade(engine: Engine, zone: str | None) -> tuple[str | None, str | None]:
    """The zone's merchant and that merchant's grade (devices.yaml), either None."""
    merchant = engine._merchants.get(zone) if zone else None
    if merchant is None:
        return None, None
    found = next((m for m in engine.config.merchants if m.id == merchant), None)
    return merchant, None if found is None else found.grade


class _Matching:
    """Engine part: the candidate index (`self._index`), rebuilt lazily after `replace`."""

    __slots__ = ()

    def _candidates(
        self: Engine, obs: Observation, zone: str | None, zone_kind: str | None
    ) -> tuple[_Slot, ...]:
        # the zone's merchant is in the key: the console may give a zone another merchant
        merchant = self._merchants.get(zone) if zone else None
        threshold = obs.subject_id if obs.kind is ObservationKind.METRIC else None
        key = (obs.kind, obs.subject, zone, zone_kind, obs.device_id, merchant, threshold)
        found = self._index.get(key)
        if found is None:
            _, grade = merchant_grade(self, zone)
            found = tuple(
                _Slot(rule, r_index, c_index)
                for r_index, rule in enumerate(self._rules)
                for c_index, clause in enumerate(rule.clauses)
                if _static_match(
                    clause, obs.kind, obs.subject, zone, zone_kind, obs.device_id, grade, threshold
                )
            )
            if len(self._index) > 100_000:
                self._index.clear()
            self._index[key] = found
        return found
