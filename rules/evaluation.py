"""Evaluation: when a rule's condition is met in full, by dwell, coverage and schedule.

A clause holds for a subject from `first_seen + dwell` until it is known to hold no longer
(`_covered`); the schedule moves that moment to when the rule is active (`_when`). A single
clause fires for its subject, a min_count clause when enough subjects of a zone hold at once,
an `all` when every clause holds at one place within `within` of each other. What is met but
not yet covered waits in the engine's pending queue for the watermark.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rules.engine import Engine
    from rules.matching import _Compiled
    from rules.situations import _Track
    from rules.violation import Violation


class _Evaluation:
    """Engine part: `_evaluate` and its cases (single clause, min_count, `all`)."""

    __slots__ = ()

    def _sat_from(self: Engine, rule: _Compiled, c_index: int, track: _Track) -> float:
        return track.first_seen + rule.dwell[c_index]

    def _covered(
        self: Engine, rule: _Compiled, c_index: int, track: _Track, watermark: float
    ) -> float:
        """Until when the clause is known to hold for this subject."""
        if not track.open:
            return track.ended_at
        if rule.gone_after[c_index] is not None:
            return track.last_seen
        return min(max(track.last_seen, watermark), track.ends_by)

    def _when(self: Engine, rule: _Compiled, at: float) -> float | None:
        schedule = rule.loaded.schedule
        if schedule is None:
            return at
        found = schedule.next_active(datetime.fromtimestamp(at, UTC))
        return None if found is None else found.timestamp()

    def _evaluate(
        self: Engine, rule: _Compiled, r_index: int, c_index: int, track: _Track, watermark: float
    ) -> list[Violation]:
        if rule.all_mode:
            return self._evaluate_all(rule, r_index, track.place, watermark)
        if rule.min_count[c_index] > 1:
            return self._evaluate_count(rule, r_index, c_index, track, watermark)
        sat_from = track.first_seen + rule.dwell[c_index]
        covered = self._covered(rule, c_index, track, watermark)
        if sat_from > covered:
            return []
        at = self._when(rule, sat_from)
        if at is None:
            return []
        if at <= covered:
            return self._fire(rule, r_index, at, [(c_index, track)], track)
        if track.open and rule.gone_after[c_index] is None and at > sat_from:
            self._push(at, r_index, c_index, track)
        return []

    def _evaluate_count(
        self: Engine, rule: _Compiled, r_index: int, c_index: int, track: _Track, watermark: float
    ) -> list[Violation]:
        dwell = rule.dwell[c_index]
        if track.first_seen + dwell > self._covered(rule, c_index, track, watermark):
            return []  # the group only grows when a member qualifies, and that member reports
        situation = rule.dedup.get(("zone", track.zone or "-"))
        if situation is not None and situation.active:
            track.fired = True  # the zone is already a case: this subject joins it
            track.dedup_key = ("zone", track.zone or "-")
            situation.active.add((c_index, track.identity))
            return []
        need = rule.min_count[c_index]
        group = list((rule.grouped[c_index] or {}).get(track.zone, {}).values())
        spans = sorted(
            ((t.first_seen + dwell, self._covered(rule, c_index, t, watermark), t) for t in group),
            key=lambda item: item[0],
        )
        for start, _, _ in spans:
            at = self._when(rule, start)
            if at is None:
                continue
            members = [t for s, end, t in spans if s <= at <= end]
            if len(members) >= need:
                anchor = max(members, key=lambda t: t.first_seen)
                return self._fire(rule, r_index, at, [(c_index, t) for t in members], anchor)
        return []

    def _evaluate_all(
        self: Engine, rule: _Compiled, r_index: int, place: Any, watermark: float
    ) -> list[Violation]:
        out: list[Violation] = []
        within = rule.within
        groups = [(g or {}).get(place, {}) for g in rule.grouped]
        anchors = [t for t in groups[0].values() if not t.fired]
        for anchor in anchors:
            start = anchor.first_seen + rule.dwell[0]
            at = start
            chosen: list[tuple[int, _Track]] = [(0, anchor)]
            for c_index in range(1, len(rule.clauses)):
                dwell = rule.dwell[c_index]
                best: _Track | None = None
                for other in groups[c_index].values():
                    if self._covered(rule, c_index, other, watermark) < start - within:
                        continue
                    if best is None or other.first_seen < best.first_seen:
                        best = other
                if best is None:
                    break
                chosen.append((c_index, best))
                at = max(at, best.first_seen + dwell)
            else:
                when = self._when(rule, at)
                if when is None:
                    continue
                if when <= self._covered(rule, 0, anchor, watermark) and all(
                    t.first_seen + rule.dwell[c] <= when
                    and self._covered(rule, c, t, watermark) >= when - within
                    for c, t in chosen[1:]
                ):
                    out += self._fire(rule, r_index, when, chosen, anchor)
                elif anchor.open and rule.gone_after[0] is None and when > watermark:
                    self._push(when, r_index, 0, anchor)
        return out
