"""Situations: per (rule, clause, subject identity) state, and how it opens, ends and expires.

A `_Track` is one subject's situation under one clause; `_update` applies an observation that
is not the common case (a new situation, a closing state, a report overtaken by a close),
`_close` ends a situation where it ended (evaluating what it satisfied before that), and
`_collect` runs as the watermark moves: overtaken situations whose close never came, groups'
retired members, re-reported subjects silent past `lost_after`, and old dedup situations.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from detectors.observation import Observation
from rules.clearance import ENDED, SILENT, SUPERSEDED, Clearance

if TYPE_CHECKING:
    from rules.engine import Engine
    from rules.matching import _Compiled

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


@dataclass(frozen=True, slots=True)
class LiveSituation:
    """A copy of one live situation, for people to look at (`Engine.live_situations`)."""

    rule_id: str
    clause: int
    device_id: str
    subject: str
    subject_id: str
    zone_id: str | None
    first_seen: float
    """Event time in seconds since the epoch, as `last_seen`."""
    last_seen: float
    dwell_s: float
    """How long the subject has been there so far, in event time."""
    needed_s: float
    """The clause's dwell: how long it must stay before it counts."""
    fired: bool
    """Its violation has opened."""
    count: int


class _Situations:
    """Engine part: tracks' lifecycle (`_update`, `_close`, `_collect`, `_push`)."""

    __slots__ = ()

    def _update(
        self: Engine,
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
                    self._close(rule, r_index, c_index, track, track.last_seen, SUPERSEDED)
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
        self: Engine,
        rule: _Compiled,
        r_index: int,
        c_index: int,
        track: _Track,
        end: float,
        how: str = ENDED,
    ) -> None:
        """The situation ended at `end`; whatever it satisfied before that still counts. When
        it was the last member of a situation that opened a violation, that is a clearance."""
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
                if not state.active and state.opened is not None:
                    last = track.recent[-1] if track.recent else track.first_obs
                    self._cleared.append(Clearance.of(state.opened, end, how, last))
                    state.opened = None
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

    def _collect(self: Engine, watermark: float) -> None:
        superseding = self._superseding
        while superseding and superseding[0][0] <= watermark:
            _, _, r_index, c_index, identity, track = heapq.heappop(superseding)
            key = (r_index, c_index, identity)
            if self._superseded.get(key) is track and r_index < len(self._rules):
                del self._superseded[key]
                rule = self._rules[r_index]
                self._close(rule, r_index, c_index, track, track.last_seen, SUPERSEDED)
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
                    self._close(rule, r_index, c_index, track, track.last_seen, SILENT)
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

    def _push(self: Engine, due: float, r_index: int, c_index: int, track: _Track) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (due, self._seq, r_index, c_index, track.identity))
