"""Backtesting one rule from the console: `rules replay` on the last hours of what the run saw.

The items come from the run's recording (`run --record`) when it has one, else from its
journal, which keeps every reading and every observation the analysis stage handled. Both are
read from their end backwards and bounded (hours, items, bytes), on a connection or file handle
of their own: a backtest never holds the journal's lock that ingest writes under.

By default the observations are replayed as recorded (`sensors="recorded"`): the live sensor
detectors carry state (a geomagnetic sensor's baseline, a GPS filter's history) that a replay
starting mid-stream would lack, and a backtest asks what the rule would have done with what the
detectors saw. `sensors="readings"` re-runs the sensor detectors on the readings instead, as
`streetwatch rules replay` does by default.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import orjson

from detectors.observation import Observation
from ingest.config import SiteConfig
from ingest.journal import _reading_of
from ingest.readings import Reading
from rules.recording import reading_from_dict
from rules.replay import SENSOR_STREAMS, replay
from rules.schema import LoadedRule, RuleSet
from rules.violation import Violation

MAX_HOURS = 24.0
MAX_ITEMS = 200_000
"""Readings and observations replayed at most: the newest ones of the window."""
MAX_RECORDING_BYTES = 256 * 2**20
"""How much of a recording's end is read at most."""
SCAN_SLACK_S = 600.0
SCAN_PAST_ROWS = 1000
"""The journal is scanned from its newest row back until this many rows in a row are older than
the window by more than SCAN_SLACK_S: rows are stored in the order they were handled, which
follows event time but for a late one now and then (a GPS unit that buffered in a tunnel)."""

Sensors = Literal["recorded", "readings"]
Item = Reading | Observation


@dataclass
class Backtest:
    source: Literal["recording", "journal"]
    since: datetime
    until: datetime
    readings: int
    observations: int
    truncated: bool
    """The window held more than the caps allow: only its newest part was replayed."""
    opened: list[Violation]
    """What would have opened within the window, in order."""
    before_window: int
    """Situations of the window that had met the rule before it began (opened before it)."""
    bad_lines: int
    elapsed_s: float

    @property
    def items(self) -> int:
        return self.readings + self.observations


def backtest(
    rule: LoadedRule,
    config: SiteConfig,
    hours: float,
    *,
    recording: Path | None = None,
    journal: Path | None = None,
    sensors: Sensors = "recorded",
    now: datetime | None = None,
    max_items: int = MAX_ITEMS,
    tolerance_s: float = 10.0,
) -> Backtest:
    """Replay `rule` alone on the last `hours` of the recording (when given) or the journal."""
    started = time.monotonic()
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=min(max(hours, 0.0), MAX_HOURS))
    want_readings = sensors == "readings"
    bad = 0
    if recording is not None:
        source: Literal["recording", "journal"] = "recording"
        items, truncated, bad = recording_tail(recording, since, max_items, want_readings)
    elif journal is not None:
        source = "journal"
        items, truncated = journal_tail(journal, since, max_items, want_readings)
    else:
        raise ValueError("nothing to replay: no recording and no journal")
    result = replay(items, RuleSet((rule,)), config, sensors=sensors, tolerance_s=tolerance_s)
    opened = [v for v in result.violations if v.opened_at >= since]
    return Backtest(
        source=source,
        since=since,
        until=until,
        readings=sum(isinstance(i, Reading) for i in items),
        observations=sum(isinstance(i, Observation) for i in items),
        truncated=truncated,
        opened=opened,
        before_window=len(result.violations) - len(opened),
        bad_lines=bad,
        elapsed_s=time.monotonic() - started,
    )


def _event_time(item: Item) -> datetime:
    return item.event_ts if isinstance(item, Reading) else item.last_seen


def recording_tail(
    path: Path,
    since: datetime,
    max_items: int = MAX_ITEMS,
    readings: bool = False,
    max_bytes: int = MAX_RECORDING_BYTES,
) -> tuple[list[Item], bool, int]:
    """The recording's items of event time `since` or later, in recorded order: the newest
    `max_items` of them, from its last `max_bytes`. Returns them, whether the window was cut
    short, and how many lines could not be read (a line the run is still writing among them).
    Sensor readings only when `readings`; header lines are skipped."""
    kept: deque[Item] = deque(maxlen=max_items)
    seen = bad = 0
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - max_bytes)
        handle.seek(start)
        if start:
            handle.readline()  # the rest of a line cut by the seek
        first_inside: bool | None = None
        for raw in handle:
            if not raw.endswith(b"\n"):
                bad += 1  # the line the run is writing
                break
            try:
                item = _parse_line(raw, readings)
            except (ValueError, KeyError, TypeError, AttributeError):
                bad += 1
                continue
            if item is None:
                continue
            inside = _event_time(item) >= since
            if first_inside is None:
                first_inside = inside
            if inside:
                seen += 1
                kept.append(item)
    # cut short: more than the cap, or the part read began inside the window
    truncated = seen > len(kept) or (start > 0 and bool(first_inside))
    return list(kept), truncated, bad


def _parse_line(raw: bytes, readings: bool) -> Item | None:
    data = orjson.loads(raw)
    kind = data.get("type")
    if kind == "observation":
        obs = Observation.from_dict(data["observation"])
        if obs.last_seen.tzinfo is None or obs.first_seen.tzinfo is None:
            raise ValueError("observation times need a UTC offset")
        return obs
    if kind == "reading" and readings:
        if data["reading"].get("stream") not in {s.value for s in SENSOR_STREAMS}:
            return None
        return reading_from_dict(data["reading"])
    return None


def journal_tail(
    path: Path, since: datetime, max_items: int = MAX_ITEMS, readings: bool = False
) -> tuple[list[Item], bool]:
    """The journal's observations (and sensor readings when `readings`) of event time `since`
    or later: observations in the order the run handled them, readings merged in by event time.
    At most the newest `max_items`; returns them and whether the window was cut short."""
    t0 = since.timestamp()
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        observations, more = _scan(
            db.execute("SELECT last_seen, data FROM observations ORDER BY seq DESC"),
            t0,
            max_items,
        )
        found: list[Item] = [Observation.from_dict(orjson.loads(data)) for _, data in observations]
        if readings:
            marks = ",".join("?" * len(SENSOR_STREAMS))
            rows, more_readings = _scan(
                db.execute(
                    "SELECT CASE WHEN time_flag = 'ok' AND device_ts IS NOT NULL THEN device_ts"
                    " ELSE received_ts END, key, device_id, stream, kind, device_ts,"
                    " received_ts, time_flag, data, NULL FROM readings"
                    f" WHERE stream IN ({marks}) ORDER BY seq DESC",
                    tuple(s.value for s in SENSOR_STREAMS),
                ),
                t0,
                max_items,
            )
            more = more or more_readings
            found = _merge(found, [_reading_of(row[1:]) for row in rows])
    finally:
        db.close()
    if len(found) > max_items:
        found, more = found[-max_items:], True
    return found, more


def _scan(rows: Iterable[tuple], t0: float, limit: int) -> tuple[list[tuple], bool]:
    """Rows newest first (their event time first) → those at `t0` or later, oldest first."""
    kept: list[tuple] = []
    past = 0
    for row in rows:
        t = row[0]
        if t < t0:
            past = past + 1 if t < t0 - SCAN_SLACK_S else 0
            if past >= SCAN_PAST_ROWS:
                break
            continue
        past = 0
        if len(kept) == limit:
            return kept[::-1], True
        kept.append(row)
    return kept[::-1], False


def _merge(observations: list[Item], readings: list[Item]) -> list[Item]:
    """Readings into the observations' handled order, each before the first observation that
    is not older than it."""
    readings.sort(key=_event_time)
    out: list[Item] = []
    r = 0
    for obs in observations:
        t = _event_time(obs)
        while r < len(readings) and _event_time(readings[r]) <= t:
            out.append(readings[r])
            r += 1
        out.append(obs)
    out += readings[r:]
    return out
