"""The rules engine: Observations in, Violations out, in event time.

State is kept per (rule, clause, subject identity) where the identity is (device, subject id,
zone). A clause holds for a subject from `first_seen + dwell` until the subject is gone: for
state-driven kinds (occupancy, geofence, off route, speeding) until an observation in another
state closes it, for re-reported kinds (camera presence) until its last report (and it is
forgotten after `lost_after` of silence).

Time is event time. Observations may arrive out of order by up to `tolerance_s`; the watermark
is the newest event time seen (or given to `advance`) minus that tolerance. An observation older
than the watermark is dropped, counted under `late_dropped`, with its reason kept in `dropped`.
A violation opens at the first moment T its condition is met in full (and the schedule is
active); it is emitted as soon as an observation covers T, or when the watermark passes T for a
state that nothing has contradicted (so a bay occupied for 5 minutes fires without a new
observation). `opened_at` is T itself, whatever the arrival order, so ids are reproducible.

With `external_clock=True` (live runs) only `advance(now)` moves event time, and lateness is
judged per device: devices disagree (a camera stamps frames with the box's clock, a GPS unit
that buffered through a tunnel reports minutes behind), so the pipeline passes the time every
live device has reached, and a report is late only behind its own device's newest one.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from detectors.observation import GeoPoint, Observation
from ingest.config import SiteConfig
from rules.schema import Clause, Dedup, LoadedRule, Party, RuleSet
from rules.violation import Violation

log = logging.getLogger("streetwatch.rules")

CLOSING_STATES = frozenset({"vacant", "exit", "back", "ok", "gone", "left", "lost", "ended"})
"""For clauses that accept any state: these states end the subject's situation."""

MAX_KEPT_OBSERVATIONS = 8
"""Per subject: the first observation and the latest ones go into the violation."""

Identity = tuple[str, str, str]
"""(device id, subject id, zone id or '-')."""

Episode = tuple[Identity, float]
"""A subject's situation: its identity and first_seen. Groups hold episodes, not identities:
a situation that a newer one of the same subject overtook (its close still on the way) must
stay where `all` and min_count look for it."""


class Dropped(NamedTuple):
    observation: Observation
    reason: str


@dataclass(slots=True)
class _Track:
    """One subject under one clause of one rule."""

    identity: Identity
    subject: str
    zone: str | None
    zone_kind: str | None
    place: Any
    first_seen: float
    last_seen: float
    count: int
    open: bool
    first_obs: Observation
    recent: deque[Observation]
    ended_at: float = math.inf
    fired: bool = False
    dedup_key: tuple[str, str] | None = None
    ends_by: float = math.inf
    """When a newer situation of the same subject began: this one ended by then."""

    @property
    def episode(self) -> Episode:
        return (self.identity, self.first_seen)

    @property
    def observations(self) -> list[Observation]:
        """The first report and the latest ones."""
        recent = list(self.recent)
        return recent if recent and recent[0] is self.first_obs else [self.first_obs, *recent]


@dataclass(slots=True)
class _DedupState:
    active: set[tuple[int, Identity]] = field(default_factory=set)
    last_opened: float = -math.inf


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
        self.dwell = [c.dwell for c in self.clauses]
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
) -> bool:
    return (
        clause.kind == obs_kind
        and (not clause.subject or subject in clause.subject)
        and (not clause.zone or zone in clause.zone)
        and (not clause.zone_kind or zone_kind in clause.zone_kind)
        and (not clause.device or device in clause.device)
    )


class Engine:
    """`process(obs)` and `advance(now)` return the violations that open; `replace` reloads."""

    def __init__(
        self,
        rules: RuleSet,
        config: SiteConfig,
        *,
        tolerance_s: float = 10.0,
        keep_dropped: int = 1000,
        external_clock: bool = False,
    ) -> None:
        self.config = config
        self.external_clock = external_clock
        self._device_clocks: dict[str, float] = {}
        self.site_id = config.site.id
        self.tolerance_s = tolerance_s
        self._counts: Counter[str] = Counter()
        self._n_observations = 0
        self._next_gc = -math.inf
        self._n_matched = 0
        self.dropped: deque[Dropped] = deque(maxlen=keep_dropped)
        self._clock = -math.inf
        self._pending: list[tuple[float, int, int, int, Identity]] = []
        self._retired: list[tuple[float, int, int, int, Any, _Track]] = []
        """Closed tracks kept in their group while a late report could still pair with them."""
        self._emitted: list[Violation] = []
        self._superseded: dict[tuple[int, int, Identity], _Track] = {}
        """Situations followed by a new one of the same subject before their close arrived."""
        self._superseding: list[tuple[float, int, int, int, Identity, _Track]] = []
        """Violations found while closing a situation, handed out by process/advance."""
        self._seq = 0
        self._closed: dict[tuple[int, int, Identity], float] = {}
        self._bays: dict[str, str] = {}
        self._zone_kinds: dict[str, str | None] = {}
        self._merchants: dict[str, str | None] = {}
        self._device_locations: dict[str, GeoPoint] = {}
        for device in config.devices:
            if device.location is not None:
                self._device_locations[device.id] = GeoPoint(
                    device.location.lon, device.location.lat
                )
            for zone in device.zones:
                self._zone_kinds[zone.id] = zone.kind.value
                self._merchants[zone.id] = zone.merchant
            if device.bay:
                self._bays[device.id] = device.bay
                kind = getattr(device, "bay_kind", None)
                self._zone_kinds.setdefault(device.bay, None if kind is None else str(kind.value))
        self._rules: list[_Compiled] = []
        self._index: dict[tuple[Any, ...], tuple[_Slot, ...]] = {}
        self.replace(rules)

    # ---- rules ------------------------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        return RuleSet(tuple(c.loaded for c in self._rules))

    def replace(self, rules: RuleSet) -> None:
        """Swap in new rules; a rule whose definition did not change keeps its state."""
        old = {c.rule.id: c for c in self._rules}
        compiled = []
        for loaded in rules.rules:
            previous = old.get(loaded.id)
            if previous is not None and previous.rule == loaded.rule:
                previous.loaded = loaded
                compiled.append(previous)
                continue
            fresh = _Compiled(loaded)
            if previous is not None:
                # an edited rule starts afresh, but its cooldowns still hold: editing a rule
                # must not reopen every case it already opened
                fresh.dedup = {
                    key: _DedupState(last_opened=state.last_opened)
                    for key, state in previous.dedup.items()
                }
            compiled.append(fresh)
        self._rules = compiled
        self._index.clear()
        self._pending.clear()
        self._closed.clear()
        self._retired.clear()
        self._superseded.clear()
        self._superseding.clear()
        for rule in self._rules:
            for grouped in rule.grouped:
                for key, members in list((grouped or {}).items()):
                    for episode, track in list(members.items()):
                        if not track.open:
                            del members[episode]
                    if not members:
                        del grouped[key]  # type: ignore[union-attr]
        for r_index, rule in enumerate(self._rules):
            for c_index, tracks in enumerate(rule.tracks):
                for track in tracks.values():
                    if not track.fired and track.open:
                        self._push(self._sat_from(rule, c_index, track), r_index, c_index, track)
        self._counts["rules_loaded"] = len(self._rules)

    def remember_opened(self, rule_id: str, situation: str, opened_at: datetime) -> bool:
        """A case this rule opened before a restart: its cooldown holds across the restart.
        (A situation that fires again after the restart gives the same violation id, which
        the case store already holds; the cooldown covers the situations that follow it.)
        False when no loaded rule has that id."""
        for rule in self._rules:
            if rule.rule.id == rule_id:
                kind, _, value = situation.partition(":")
                state = rule.dedup.setdefault((kind, value), _DedupState())
                state.last_opened = max(state.last_opened, opened_at.timestamp())
                return True
        return False

    def _candidates(
        self, obs: Observation, zone: str | None, zone_kind: str | None
    ) -> tuple[_Slot, ...]:
        key = (obs.kind, obs.subject, zone, zone_kind, obs.device_id)
        found = self._index.get(key)
        if found is None:
            found = tuple(
                _Slot(rule, r_index, c_index)
                for r_index, rule in enumerate(self._rules)
                for c_index, clause in enumerate(rule.clauses)
                if _static_match(clause, obs.kind, obs.subject, zone, zone_kind, obs.device_id)
            )
            if len(self._index) > 100_000:
                self._index.clear()
            self._index[key] = found
        return found

    # ---- input ------------------------------------------------------------------------------

    @property
    def watermark(self) -> datetime | None:
        if self._clock == -math.inf:
            return None
        return datetime.fromtimestamp(self._clock - self.tolerance_s, UTC)

    @property
    def stats(self) -> Counter[str]:
        """Counters: observations, matched, unmatched, late_dropped, violations, suppressed_*."""
        counts = Counter(self._counts)
        counts["observations"] = self._n_observations
        counts["matched"] = self._n_matched
        counts["unmatched"] = self._n_observations - self._n_matched - counts["late_dropped"]
        return counts

    def process(self, obs: Observation) -> list[Violation]:
        self._n_observations += 1
        t = obs.last_seen.timestamp()
        if self.external_clock:
            newest = self._device_clocks.get(obs.device_id, -math.inf)
            behind = f"the newest event time of {obs.device_id}"
        else:
            newest, behind = self._clock, "the newest event time"
        if t < newest - self.tolerance_s:
            late = newest - t
            self._counts["late_dropped"] += 1
            reason = f"late by {late:.1f} s behind {behind} (tolerance {self.tolerance_s:g} s)"
            self.dropped.append(Dropped(obs, reason))
            log.debug("dropped observation %s: %s", obs.key, reason)
            return []
        if self.external_clock:
            if t > newest:
                self._device_clocks[obs.device_id] = t
        elif t > self._clock:
            self._clock = t
        clock = self._clock
        zone = obs.zone_id or self._bays.get(obs.device_id)
        zone_kind = obs.zone_kind or (self._zone_kinds.get(zone) if zone else None)
        candidates = self._candidates(obs, zone, zone_kind)
        if not candidates:
            return []
        self._n_matched += 1
        out: list[Violation] = []
        watermark = clock - self.tolerance_s
        identity = (obs.device_id, obs.subject_id, zone or "-")
        first = obs.first_seen.timestamp()
        state = obs.state
        for slot in candidates:
            track = slot.tracks.get(identity)
            states = slot.states
            gone_after = slot.gone_after
            if (
                track is not None
                and (state in states if states is not None else state not in CLOSING_STATES)
                and first == track.first_seen
                and (gone_after is None or first <= track.last_seen + gone_after)
            ):
                # the common case: one more report of a live situation
                if t >= track.last_seen:
                    track.last_seen = t
                    track.count = obs.count
                track.recent.append(obs)
                if track.fired:
                    continue
                if slot.simple:
                    due = track.first_seen + slot.dwell
                    if due > t and (gone_after is not None or due > watermark):
                        continue  # not there long enough yet
            else:
                track = self._update(
                    slot.rule, slot.r_index, slot.c_index, obs, identity, zone, zone_kind, t, first
                )
                if track is None or track.fired:
                    continue
            out += self._evaluate(slot.rule, slot.r_index, slot.c_index, track, watermark)
        if self._emitted:
            out = self._emitted + out
            self._emitted = []
        return out

    def advance(self, now: datetime) -> list[Violation]:
        """Event time has reached `now` (the pipeline's watermark over devices): dwell thresholds
        crossed with no new observation fire; subjects silent past `lost_after` are forgotten."""
        t = now.timestamp()
        if t > self._clock:
            self._clock = t
        watermark = self._clock - self.tolerance_s
        out: list[Violation] = []
        pending = self._pending
        while pending and pending[0][0] <= watermark:
            _, _, r_index, c_index, identity = heapq.heappop(pending)
            if r_index >= len(self._rules):
                continue
            rule = self._rules[r_index]
            track = rule.tracks[c_index].get(identity)
            if track is not None and not track.fired and track.open:
                out += self._evaluate(rule, r_index, c_index, track, watermark)
        self._collect(watermark)
        if self._emitted:
            out += self._emitted
            self._emitted = []
        return out

    # ---- state ------------------------------------------------------------------------------

    def _update(
        self,
        rule: _Compiled,
        r_index: int,
        c_index: int,
        obs: Observation,
        identity: Identity,
        zone: str | None,
        zone_kind: str | None,
        t: float,
        first: float,
    ) -> _Track | None:
        tracks = rule.tracks[c_index]
        track = tracks.get(identity)
        states = rule.states[c_index]
        state = obs.state
        matches = state in states if states is not None else state not in CLOSING_STATES
        if not matches:
            if track is not None and t < track.last_seen:
                # older than the situation we track: it may close the one before it
                track = self._superseded.pop((r_index, c_index, identity), None)
            if track is not None and t >= track.last_seen:
                # a new span (vacant since...) ends the situation where it starts; a closing
                # report of the same situation (exit, back) where it was made
                end = first if first > track.first_seen else t
                track.recent.append(obs)
                self._close(rule, r_index, c_index, track, end)
            elif track is None and rule.states[c_index] is not None:
                # a close that overtook the reports it closes: those are stale when they come
                key = (r_index, c_index, identity)
                self._closed[key] = max(self._closed.get(key, -math.inf), t)
            return None
        closed_at = self._closed.get((r_index, c_index, identity))
        if closed_at is not None and t <= closed_at:
            self._counts["stale_after_close"] += 1
            return None
        gone_after = rule.gone_after[c_index]
        if track is not None:
            if first > track.first_seen:
                # detectors keep first_seen for one situation: this is a new one, so the
                # previous one ended. A state-driven one's closing report may still be on its
                # way (out of order): it waits aside until the watermark passes this start.
                del tracks[identity]
                if gone_after is None and track.open:
                    track.ends_by = first
                    self._superseded[(r_index, c_index, identity)] = track
                    self._seq += 1
                    heapq.heappush(
                        self._superseding, (first, self._seq, r_index, c_index, identity, track)
                    )
                else:
                    tracks[identity] = track
                    self._close(rule, r_index, c_index, track, track.last_seen)
                track = None
            elif first < track.first_seen:
                self._counts["stale_report"] += 1
                return None
        if track is None:
            track = _Track(
                identity,
                obs.subject,
                zone,
                zone_kind,
                rule.place_of(zone),
                first,
                t,
                obs.count,
                open=True,
                first_obs=obs,
                recent=deque((obs,), maxlen=MAX_KEPT_OBSERVATIONS),
            )
            tracks[identity] = track
            grouped = rule.grouped[c_index]
            if grouped is not None:
                grouped.setdefault(track.place if rule.all_mode else zone, {})[track.episode] = (
                    track
                )
            if gone_after is None:
                self._push(self._sat_from(rule, c_index, track), r_index, c_index, track)
            return track
        if t >= track.last_seen:
            track.last_seen = t
            track.count = obs.count
        track.recent.append(obs)
        return track

    def _close(
        self, rule: _Compiled, r_index: int, c_index: int, track: _Track, end: float
    ) -> None:
        """The situation ended at `end`; whatever it satisfied before that still counts."""
        track.open = False
        track.ended_at = end
        tracks = rule.tracks[c_index]
        if tracks.get(track.identity) is track:
            del tracks[track.identity]
        self._closed[(r_index, c_index, track.identity)] = max(end, track.last_seen)
        if not track.fired:
            watermark = self._clock - self.tolerance_s
            self._emitted += self._evaluate(rule, r_index, c_index, track, watermark)
        if track.dedup_key is not None:
            state = rule.dedup.get(track.dedup_key)
            if state is not None:
                state.active.discard((c_index, track.identity))
        if rule.grouped[c_index] is not None:
            keep = (rule.within if rule.all_mode else 0.0) + self.tolerance_s
            self._seq += 1
            heapq.heappush(
                self._retired,
                (
                    max(end, track.last_seen) + keep,
                    self._seq,
                    r_index,
                    c_index,
                    track.place if rule.all_mode else track.zone,
                    track,
                ),
            )

    def _collect(self, watermark: float) -> None:
        superseding = self._superseding
        while superseding and superseding[0][0] <= watermark:
            _, _, r_index, c_index, identity, track = heapq.heappop(superseding)
            key = (r_index, c_index, identity)
            if self._superseded.get(key) is track and r_index < len(self._rules):
                del self._superseded[key]
                self._close(self._rules[r_index], r_index, c_index, track, track.last_seen)
        retired = self._retired
        while retired and retired[0][0] < watermark:
            _, _, r_index, c_index, key, track = heapq.heappop(retired)
            if r_index >= len(self._rules):
                continue
            grouped = self._rules[r_index].grouped[c_index]
            members = None if grouped is None else grouped.get(key)
            if members is not None and members.get(track.episode) is track:
                del members[track.episode]
                if not members:
                    del grouped[key]
        for r_index, rule in enumerate(self._rules):
            for c_index, tracks in enumerate(rule.tracks):
                gone_after = rule.gone_after[c_index]
                if gone_after is None:
                    continue
                expired = [t for t in tracks.values() if t.last_seen + gone_after < watermark]
                for track in expired:
                    self._close(rule, r_index, c_index, track, track.last_seen)
        horizon = watermark - self.tolerance_s
        if self._closed:
            self._closed = {k: v for k, v in self._closed.items() if v >= horizon}
        if watermark >= self._next_gc:
            self._next_gc = watermark + 60.0
            for rule in self._rules:
                expired_keys = [
                    key
                    for key, state in rule.dedup.items()
                    if not state.active and state.last_opened + rule.cooldown < watermark
                ]
                for key in expired_keys:
                    del rule.dedup[key]

    def _push(self, due: float, r_index: int, c_index: int, track: _Track) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (due, self._seq, r_index, c_index, track.identity))

    # ---- evaluation -------------------------------------------------------------------------

    def _sat_from(self, rule: _Compiled, c_index: int, track: _Track) -> float:
        return track.first_seen + rule.dwell[c_index]

    def _covered(self, rule: _Compiled, c_index: int, track: _Track, watermark: float) -> float:
        """Until when the clause is known to hold for this subject."""
        if not track.open:
            return track.ended_at
        if rule.gone_after[c_index] is not None:
            return track.last_seen
        return min(max(track.last_seen, watermark), track.ends_by)

    def _when(self, rule: _Compiled, at: float) -> float | None:
        schedule = rule.loaded.schedule
        if schedule is None:
            return at
        found = schedule.next_active(datetime.fromtimestamp(at, UTC))
        return None if found is None else found.timestamp()

    def _evaluate(
        self, rule: _Compiled, r_index: int, c_index: int, track: _Track, watermark: float
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
        self, rule: _Compiled, r_index: int, c_index: int, track: _Track, watermark: float
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
        self, rule: _Compiled, r_index: int, place: Any, watermark: float
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

    # ---- output -----------------------------------------------------------------------------

    def _fire(
        self,
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
            return []
        state.last_opened = at
        self._counts["violations"] += 1
        return [self._violation(rule, at, members, anchor, key)]

    def _violation(
        self,
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
            evidence=spec.evidence.spec(),
            thresholds=thresholds,
            observations=tuple(observations),
        )

    # ---- introspection ----------------------------------------------------------------------

    def live_subjects(self) -> int:
        return sum(len(tracks) for rule in self._rules for tracks in rule.tracks)
