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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig, Zone
from rules.clearance import Clearance
from rules.dedup import _Dedup, _DedupState
from rules.evaluation import _Evaluation
from rules.matching import _Compiled, _Matching, _Slot
from rules.schema import RuleSet
from rules.situations import (
    CLOSING_STATES,
    MAX_KEPT_OBSERVATIONS,
    Episode,
    Identity,
    LiveSituation,
    _Situations,
    _Track,
)
from rules.thresholds import Thresholds
from rules.violation import Violation

__all__ = [
    "CLOSING_STATES",
    "MAX_KEPT_OBSERVATIONS",
    "Clearance",
    "Dropped",
    "Engine",
    "Episode",
    "Identity",
    "LiveSituation",
]

log = logging.getLogger("streetwatch.rules")


class Dropped(NamedTuple):
    observation: Observation
    reason: str


class Engine(_Matching, _Situations, _Evaluation, _Dedup):
    """`process(obs)` and `advance(now)` return the violations that open; `clearances()` the
    opened ones whose situation has since ended; `replace` reloads.

    The input side (lateness, the hot path, the watermark) and the public surface live here;
    the rest comes from its parts, each over the same state: the candidate index
    (`rules.matching`), situations' lifecycle (`rules.situations`), when a condition is met
    (`rules.evaluation`), and cooldown, dedup and the violation itself (`rules.dedup`).
    """

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
        self._cleared: list[Clearance] = []
        """Opened violations whose situation ended, handed out by `clearances()`."""
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
        self.thresholds = Thresholds(config)
        """Metric samples → threshold episodes (rules.thresholds), fed by process/advance."""
        self.replace(rules)

    # ---- rules ------------------------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        return RuleSet(tuple(c.loaded for c in self._rules))

    def learn_zones(self, zones: Iterable[Zone]) -> None:
        """Zones added or changed while running (the console's editor): their kinds and
        merchants, which observations name by zone id. Call on the thread that feeds the
        engine."""
        for zone in zones:
            self._zone_kinds[zone.id] = zone.kind.value
            self._merchants[zone.id] = zone.merchant

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
        self.thresholds.configure(
            c.threshold for rule in compiled for c in rule.clauses if c.threshold is not None
        )
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
        if obs.kind is ObservationKind.METRIC and obs.state is None:
            # a sensor sample: the rules' thresholds make episodes of it
            out: list[Violation] = []
            for episode in self.thresholds.feed(obs):
                out += self.process(episode)
            return out
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
        out: list[Violation] = []
        for episode in self.thresholds.tick(t):
            out += self.process(episode)
        if t > self._clock:
            self._clock = t
        watermark = self._clock - self.tolerance_s
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

    def clearances(self) -> list[Clearance]:
        """The opened violations whose situation has ended since the last call (the subject
        left, the bay is vacant, the truck is back on route), found by `process` and `advance`.
        Call after handing on the violations of the same calls: a violation may open and clear
        in one batch. Each opened violation clears at most once."""
        out, self._cleared = self._cleared, []
        return out

    # ---- introspection ----------------------------------------------------------------------

    def live_subjects(self) -> int:
        return sum(len(tracks) for rule in self._rules for tracks in rule.tracks)

    def live_situations(self) -> list[LiveSituation]:
        """Every open situation as plain data, for another thread (the console) to show.

        Reads without a lock and never mutates: `replace` swaps in a new rule list rather than
        changing the one read here, and each clause's dict of tracks is copied in one
        `dict.copy()`, which holds the GIL throughout (its keys are tuples of str; no Python
        code runs), so the analysis thread cannot change it mid-copy. A track's fields are then
        read one by one: a situation may be one report behind, never broken.
        """
        rules = self._rules
        clock = self._clock
        out: list[LiveSituation] = []
        for rule in rules:
            rule_id = rule.rule.id
            for c_index, tracks in enumerate(rule.tracks):
                gone_after = rule.gone_after[c_index]
                needed = rule.dwell[c_index]
                for track in tracks.copy().values():
                    if not track.open:
                        continue
                    last = track.last_seen
                    # a state-driven situation (occupied, off route) lasts until its close, so
                    # it grows with event time; a re-reported one (camera presence) only with
                    # its reports
                    now = max(last, clock) if gone_after is None else last
                    out.append(
                        LiveSituation(
                            rule_id,
                            c_index,
                            track.identity[0],
                            track.subject,
                            track.identity[1],
                            track.zone,
                            track.first_seen,
                            last,
                            max(0.0, now - track.first_seen),
                            needed,
                            track.fired,
                            track.count,
                        )
                    )
        return out
