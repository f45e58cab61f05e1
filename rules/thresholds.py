"""Thresholds over sensor metrics: a level, a rate of change, or silence, with hysteresis.

A clause `kind: metric` names one `threshold:`

    threshold: {metric: fill_pct, above: 90, clear: 80}            # a level
    threshold: {metric: water_level_m, rate_per: 10m, above: 0.3}   # a rise of 0.3 m in 10 min
    threshold: {silent_for: 30m}                                    # no data from the device

The sensor detector reports every sample as a plain `metric` observation (no state). The engine
hands those to `Thresholds`, which keeps one small state machine per (threshold, device) and
turns samples into *episodes*: observations of kind `metric` in state `over` (first_seen: when
the value crossed the threshold, kept for the whole episode) or `ok` (it went back past the
clear level, which ends the episode). The engine treats them like any state-driven situation:
the clause's dwell runs from the crossing, a value that bounces between the clear level and the
threshold stays one episode (so one case), and the `ok` closes it (a clearance). Silence is an
episode too: it starts when the device was last heard and is reported once `silent_for` has
passed (the clause's dwell adds to that); the device's next sample ends it.

An episode's `subject_id` is the threshold's `signature`, so rules with different thresholds on
the same metric never see each other's episodes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, model_validator

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import DeviceKind, SiteConfig, Strict
from rules.fields import Duration

OVER = "over"
OK = "ok"
STATE_VERSION = 1


def _g(value: float) -> str:
    return f"{value:g}"


class Threshold(Strict):
    """One metric above/below a level (or its rate of change), or a device's silence."""

    metric: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,47}$")
    """The metric (devices.yaml `metrics:` name); for `silent_for`, none: any metric."""
    above: float | None = Field(None, allow_inf_nan=False)
    """An episode starts when the value (or rate) goes above this ..."""
    below: float | None = Field(None, allow_inf_nan=False)
    """... or below this."""
    clear: float | None = Field(None, allow_inf_nan=False)
    """Hysteresis: the episode ends only when the value is back past this level (default: the
    threshold itself). 90 above, 80 clear: a bin hovering at 85-95 % is one episode."""
    rate_per: Duration | None = Field(None, gt=0)
    """Compare the change per this long (e.g. 10m) instead of the value itself."""
    silent_for: Duration | None = Field(None, gt=0)
    """No sample from the device for this long is an episode; its next sample ends it."""

    @model_validator(mode="after")
    def _shape(self) -> Threshold:
        if self.silent_for is not None:
            extra = [n for n in ("above", "below", "clear", "rate_per") if getattr(self, n)]
            if extra:
                raise ValueError(f"silent_for stands alone; drop {', '.join(extra)}")
            return self
        if self.metric is None:
            raise ValueError("a threshold names its metric (or is `silent_for: <duration>`)")
        if (self.above is None) == (self.below is None):
            raise ValueError("a threshold has one of `above` or `below` (or `silent_for`)")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(f"clear {self.clear:g} must be at or below above {self.above:g}")
            if self.below is not None and self.clear < self.below:
                raise ValueError(f"clear {self.clear:g} must be at or above below {self.below:g}")
        return self

    @property
    def level(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def clear_level(self) -> float:
        return self.level if self.clear is None else self.clear

    @property
    def signature(self) -> str:
        """The threshold in one canonical string: the subject id of its episodes."""
        if self.silent_for is not None:
            return f"silent:{self.metric or '*'}>{_g(self.silent_for)}s"
        what = self.metric if self.rate_per is None else f"d{self.metric}/{_g(self.rate_per)}s"
        sign = ">" if self.above is not None else "<"
        return f"{what}{sign}{_g(self.level)}~{_g(self.clear_level)}"

    @property
    def extra_dwell_s(self) -> float:
        """What a clause's dwell adds to: silence only counts once it lasted `silent_for`."""
        return self.silent_for or 0.0

    def describe(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        data["signature"] = self.signature
        return data


@dataclass(slots=True)
class _State:
    over: bool = False
    since: float = 0.0
    last_t: float = float("-inf")
    peak: float | None = None
    window: deque[tuple[float, float]] = field(default_factory=deque)
    last_obs: Observation | None = None


class Thresholds:
    """The engine's threshold state: samples in (`feed`), time passing (`tick`), episodes out."""

    def __init__(self, config: SiteConfig, *, count_unheard: bool = True) -> None:
        self.config = config
        self.count_unheard = count_unheard
        """Whether a sensor never heard is silent since the start (live runs: a dead sensor
        after a restart); a replay sets it False, since a recording need not hold every
        device of the site."""
        self._specs: dict[str, Threshold] = {}
        self._by_metric: dict[str, list[Threshold]] = {}
        self._silent: list[Threshold] = []
        self._states: dict[tuple[str, str], _State] = {}
        self._started: float | None = None
        self.stats: dict[str, int] = {
            "samples": 0,
            "out_of_order": 0,
            "episodes": 0,
            "restore_skipped": 0,
            "restore_failed": 0,
        }

    def configure(self, thresholds: Iterable[Threshold]) -> None:
        """The loaded rules' thresholds; state of thresholds that stay is kept."""
        specs = {t.signature: t for t in thresholds}
        self._specs = specs
        self._by_metric = {}
        for spec in specs.values():
            if spec.silent_for is None:
                self._by_metric.setdefault(spec.metric or "", []).append(spec)
        self._silent = [s for s in specs.values() if s.silent_for is not None]
        self._states = {k: v for k, v in self._states.items() if k[0] in specs}

    def feed(self, sample: Observation) -> list[Observation]:
        """One sample (`metric` observation without state): the episodes it starts, continues or
        ends."""
        self.stats["samples"] += 1
        metric = str(sample.attributes.get("metric", sample.subject))
        value = float(sample.attributes["value"])
        t = sample.last_seen.timestamp()
        out: list[Observation] = []
        for spec in self._silent:
            if spec.metric is None or spec.metric == metric:
                state = self._state(spec, sample.device_id)
                if t < state.last_t:
                    continue
                state.last_t = t
                state.last_obs = sample
                if state.over:
                    state.over = False
                    out.append(self._episode(spec, sample, OK, t, t, value))
        for spec in self._by_metric.get(metric, ()):
            state = self._state(spec, sample.device_id)
            if t < state.last_t:
                self.stats["out_of_order"] += 1
                continue
            state.last_t = t
            state.last_obs = sample
            measured = value if spec.rate_per is None else self._rate(spec, state, t, value)
            if measured is None:
                continue
            if not state.over:
                if _beyond(spec, measured, spec.level):
                    state.over, state.since, state.peak = True, t, measured
                    self.stats["episodes"] += 1
                    out.append(self._episode(spec, sample, OVER, t, t, measured, state))
            elif _beyond(spec, measured, spec.clear_level):
                state.peak = _worse(spec, state.peak, measured)
                out.append(self._episode(spec, sample, OVER, state.since, t, measured, state))
            else:
                state.over = False
                out.append(self._episode(spec, sample, OK, t, t, measured, state))
        return out

    def tick(self, now: float) -> list[Observation]:
        """Time passing: devices silent for a `silent_for` start a silence episode. A sensor
        never heard since the box started counts from the start (unless `count_unheard` is
        off)."""
        if not self._silent:
            return []
        if self._started is None:
            self._started = now
        out: list[Observation] = []
        for spec in self._silent:
            for device in self.config.devices:
                if device.kind is not DeviceKind.SENSOR:
                    continue
                if spec.metric is not None and spec.metric not in (device.metrics or {}):
                    continue
                if not self.count_unheard and (spec.signature, device.id) not in self._states:
                    continue
                state = self._state(spec, device.id)
                if state.last_t == float("-inf"):
                    state.last_t = self._started
                if state.over or now - state.last_t < spec.silent_for:  # type: ignore[operator]
                    continue
                state.over = True
                self.stats["episodes"] += 1
                out.append(self._silence(spec, device, state, now))
        return out

    # ---- across a restart --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every (threshold, device) state, JSON-ready. Saved with the analysis checkpoint, it
        lets an episode open before a restart keep its crossing time: the engine then finds its
        violation again (so the case's end still clears it) and a silent sensor stays silent
        since it was last heard."""
        states = [
            {
                "threshold": signature,
                "device": device_id,
                "over": state.over,
                "since": state.since,
                "last_t": None if state.last_t == float("-inf") else state.last_t,
                "peak": state.peak,
                "window": [list(point) for point in state.window],
                "last_obs": None if state.last_obs is None else state.last_obs.to_dict(),
            }
            for (signature, device_id), state in self._states.items()
        ]
        return {"version": STATE_VERSION, "states": states}

    def restore(self, data: dict[str, Any]) -> None:
        """Take back a `snapshot()`. States of thresholds no loaded rule has (or of devices gone
        from the site) are skipped and counted as `restore_skipped`."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"threshold state version {data.get('version')!r}, expected {STATE_VERSION}"
            )
        for item in data.get("states") or ():
            signature, device_id = str(item["threshold"]), str(item["device"])
            if signature not in self._specs or self.config.device(device_id) is None:
                self.stats["restore_skipped"] += 1
                continue
            last_obs = item.get("last_obs")
            self._states[(signature, device_id)] = _State(
                over=bool(item["over"]),
                since=float(item["since"]),
                last_t=float("-inf") if item.get("last_t") is None else float(item["last_t"]),
                peak=None if item.get("peak") is None else float(item["peak"]),
                window=deque((float(t), float(v)) for t, v in item.get("window") or ()),
                last_obs=None if last_obs is None else Observation.from_dict(last_obs),
            )

    # ---- helpers ----------------------------------------------------------------------------

    def _state(self, spec: Threshold, device_id: str) -> _State:
        key = (spec.signature, device_id)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        return state

    @staticmethod
    def _rate(spec: Threshold, state: _State, t: float, value: float) -> float | None:
        """Change per `rate_per` over the samples of the last `rate_per` (None until they span
        at least half of it)."""
        per: float = spec.rate_per  # type: ignore[assignment]
        window = state.window
        window.append((t, value))
        while window and window[0][0] < t - per:
            window.popleft()
        t0, v0 = window[0]
        if t - t0 < per / 2:
            return None
        return (value - v0) / (t - t0) * per

    def _episode(
        self,
        spec: Threshold,
        sample: Observation,
        state_name: str,
        first: float,
        last: float,
        measured: float,
        state: _State | None = None,
    ) -> Observation:
        attributes = dict(sample.attributes)
        attributes["threshold"] = spec.describe()
        if spec.rate_per is not None:
            attributes["rate"] = measured
        if state is not None and state.peak is not None:
            attributes["peak"] = state.peak
        return Observation(
            kind=ObservationKind.METRIC,
            device_id=sample.device_id,
            subject=sample.attributes.get("facility") or "sensor",
            subject_id=spec.signature,
            first_seen=datetime.fromtimestamp(first, UTC),
            last_seen=datetime.fromtimestamp(last, UTC),
            state=state_name,
            location=sample.location,
            attributes=attributes,
        )

    def _silence(self, spec: Threshold, device: Any, state: _State, now: float) -> Observation:
        last = state.last_obs
        attributes: dict[str, Any] = {
            "threshold": spec.describe(),
            "silent_s": now - state.last_t,
            "last_heard": datetime.fromtimestamp(state.last_t, UTC).isoformat(),
        }
        if last is not None:
            attributes.update({k: v for k, v in last.attributes.items() if k != "threshold"})
        location = None
        if device.location is not None:
            location = GeoPoint(device.location.lon, device.location.lat)
        return Observation(
            kind=ObservationKind.METRIC,
            device_id=device.id,
            subject=device.facility or "sensor",
            subject_id=spec.signature,
            first_seen=datetime.fromtimestamp(state.last_t, UTC),
            last_seen=datetime.fromtimestamp(now, UTC),
            state=OVER,
            location=location,
            attributes=attributes,
        )


def _beyond(spec: Threshold, value: float, level: float) -> bool:
    """Past `level` on the threshold's side (above it for `above`, below it for `below`)."""
    return value > level if spec.above is not None else value < level


def _worse(spec: Threshold, peak: float | None, value: float) -> float:
    if peak is None:
        return value
    return max(peak, value) if spec.above is not None else min(peak, value)
