"""A drone's recent telemetry, asked for its pose at a frame's time.

Telemetry arrives on the analysis thread (MQTT → journal → pipeline), frames on the camera's
worker thread: the track is a short, lock-guarded, time-sorted window of samples. The pose at
a frame's time is interpolated between the two samples around it (heading along the shorter
arc), or held from the nearest sample when the frame lies just past either end. A frame further
than `max_staleness_s` from any sample, or in a gap longer than twice that, has no pose: the
drone may have turned meanwhile, and a stale pose would place subjects with confidence in the
wrong spot. Refusals raise `NotPlaced` and are counted by reason.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from detectors.groundproj import NotPlaced, Pose
from ingest.readings import DroneTelemetry

KEEP_S = 120.0
"""Samples older than this behind the newest are dropped."""
MAX_SAMPLES = 10_000


@dataclass(frozen=True, slots=True)
class Sample:
    ts: datetime
    telemetry: DroneTelemetry


class TelemetryTrack:
    def __init__(
        self,
        max_staleness_s: float = 1.0,
        *,
        fixed_pitch_deg: float | None = None,
        roll_deg: float = 0.0,
        keep_s: float = KEEP_S,
        stats: Counter[str] | None = None,
    ) -> None:
        """`fixed_pitch_deg`: the pitch of a fixed mount, for telemetry without
        `gimbal_pitch`. `stats`: where refusals are counted (a fresh Counter otherwise)."""
        self.max_staleness = timedelta(seconds=max_staleness_s)
        self.fixed_pitch_deg = fixed_pitch_deg
        self.roll_deg = roll_deg
        self.keep = timedelta(seconds=keep_s)
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self._lock = threading.Lock()
        self._times: list[datetime] = []
        self._samples: list[Sample] = []

    def add(self, ts: datetime, telemetry: DroneTelemetry) -> None:
        """One sample (any order; a repeat of the same time replaces it: redeliveries)."""
        with self._lock:
            i = bisect.bisect_left(self._times, ts)
            if i < len(self._times) and self._times[i] == ts:
                self._samples[i] = Sample(ts, telemetry)
                return
            self._times.insert(i, ts)
            self._samples.insert(i, Sample(ts, telemetry))
            cut = bisect.bisect_left(self._times, self._times[-1] - self.keep)
            cut = max(cut, len(self._times) - MAX_SAMPLES)
            if cut > 0:
                del self._times[:cut], self._samples[:cut]
            self.stats["telemetry_samples"] += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def pose_at(self, ts: datetime) -> Pose:
        """The pose at `ts`, or NotPlaced (`no_telemetry`, `stale_telemetry`, `no_heading`,
        `no_pitch`)."""
        with self._lock:
            if not self._samples:
                raise self._refuse("no_telemetry", "no telemetry from the drone yet")
            i = bisect.bisect_left(self._times, ts)
            before = self._samples[i - 1] if i > 0 else None
            after = self._samples[i] if i < len(self._samples) else None
        if after is not None and after.ts == ts:
            return self._pose(after.telemetry, after.telemetry, 0.0)
        if before is not None and after is not None:
            gap = after.ts - before.ts
            if gap <= 2 * self.max_staleness:
                share = (ts - before.ts) / gap
                return self._pose(before.telemetry, after.telemetry, share)
        nearest = min((s for s in (before, after) if s is not None), key=lambda s: abs(s.ts - ts))
        off = abs(nearest.ts - ts)
        if off > self.max_staleness:
            raise self._refuse(
                "stale_telemetry",
                f"nearest telemetry is {off.total_seconds():.1f} s from the frame "
                f"(over {self.max_staleness.total_seconds():g} s)",
            )
        return self._pose(nearest.telemetry, nearest.telemetry, 0.0)

    def _pose(self, a: DroneTelemetry, b: DroneTelemetry, share: float) -> Pose:
        if a.heading is None or b.heading is None:
            raise self._refuse("no_heading", "the telemetry carries no heading")
        pitch_a = a.gimbal_pitch if a.gimbal_pitch is not None else self.fixed_pitch_deg
        pitch_b = b.gimbal_pitch if b.gimbal_pitch is not None else self.fixed_pitch_deg
        if pitch_a is None or pitch_b is None:
            raise self._refuse(
                "no_pitch", "the telemetry carries no gimbal_pitch and fov sets no gimbal_pitch_deg"
            )
        turn = (b.heading - a.heading + 180.0) % 360.0 - 180.0
        return Pose(
            lat=a.lat + (b.lat - a.lat) * share,
            lon=a.lon + (b.lon - a.lon) * share,
            alt_m=a.alt_m + (b.alt_m - a.alt_m) * share,
            heading_deg=(a.heading + turn * share) % 360.0,
            pitch_deg=pitch_a + (pitch_b - pitch_a) * share,
            roll_deg=self.roll_deg,
        )

    def _refuse(self, reason: str, detail: str) -> NotPlaced:
        self.stats[f"refused_{reason}"] += 1
        return NotPlaced(reason, detail)
