"""Late data and the TimescaleDB continuous aggregates.

A continuous aggregate's refresh policy only looks back `start_offset` (7 days for
`occupancy_hourly`, 35 for the daily ones): rows shipped later than that, such as the backlog
of a box that was offline for 8 days, would never reach the materialised buckets. The sink
knows the time span of every batch it copies; when part of it is older than an aggregate's
window (less a margin for the policy's schedule and clock skew), the affected buckets are
recorded in `sink_refresh_pending` in the same transaction as the rows, and refreshed with
`CALL refresh_continuous_aggregate(...)` once the sink has caught up. A crash in between
leaves the record, and the next start refreshes it.

`late_ranges` decides (pure); `note_late` and `refresh_pending` talk to the database.
Plain PostgreSQL needs none of this: its aggregates are views computed at query time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

log = logging.getLogger("streetwatch.sink")


@dataclass(frozen=True)
class Aggregate:
    name: str
    table: str
    bucket: timedelta
    window: timedelta
    """The refresh policy's start_offset (migrations/0003_aggregates.timescale.sql)."""


AGGREGATES = (
    Aggregate("occupancy_hourly", "geomag_states", timedelta(hours=1), timedelta(days=7)),
    Aggregate("violations_daily", "case_events", timedelta(days=1), timedelta(days=35)),
    Aggregate("vehicle_distance_daily", "gps_fixes", timedelta(days=1), timedelta(days=35)),
    Aggregate("metrics_hourly", "metrics", timedelta(hours=1), timedelta(days=7)),
)
MARGIN = timedelta(hours=2)
"""Rows this close inside a window may fall out of it before the policy next runs (every 30
minutes or hour) or by the database's clock: they are refreshed too."""

Span = tuple[datetime, datetime]
"""The oldest and newest `ts` of the rows a batch copied into one table."""


def _floor(ts: datetime, bucket: timedelta) -> datetime:
    """The start of `ts`'s bucket (buckets of hours and days are aligned on UTC midnight)."""
    width = bucket.total_seconds()
    return datetime.fromtimestamp(ts.timestamp() // width * width, UTC)


def late_ranges(
    spans: dict[str, Span], now: datetime, aggregates: tuple[Aggregate, ...] = AGGREGATES
) -> list[tuple[str, datetime, datetime]]:
    """(aggregate, start, end) for each aggregate that `spans` reach behind the window of;
    whole buckets, `end` exclusive, stopping where the policy's window takes over."""
    ranges = []
    for agg in aggregates:
        span = spans.get(agg.table)
        if span is None:
            continue
        oldest, newest = span
        edge = now - agg.window + MARGIN
        if oldest >= edge:
            continue
        start = _floor(oldest, agg.bucket)
        end = _floor(min(newest, edge), agg.bucket) + agg.bucket
        ranges.append((agg.name, start, end))
    return ranges


def merge_spans(spans: dict[str, Span], table: str, rows: list[tuple]) -> None:
    """Widen `spans[table]` by the rows' `ts` (their first column)."""
    if not rows:
        return
    times = [row[0] for row in rows]
    lo, hi = min(times), max(times)
    if table in spans:
        lo, hi = min(lo, spans[table][0]), max(hi, spans[table][1])
    spans[table] = (lo, hi)


def note_late(
    conn: psycopg.Connection, origin: str, ranges: list[tuple[str, datetime, datetime]]
) -> None:
    """Record ranges to refresh (call inside the batch's transaction)."""
    for name, start, end in ranges:
        conn.execute(
            "INSERT INTO sink_refresh_pending (origin, aggregate, start_ts, end_ts)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (origin, aggregate) DO UPDATE SET"
            " start_ts = least(sink_refresh_pending.start_ts, excluded.start_ts),"
            " end_ts = greatest(sink_refresh_pending.end_ts, excluded.end_ts)",
            (origin, name, start, end),
        )


def refresh_pending(conn: psycopg.Connection, origin: str) -> list[tuple[str, datetime, datetime]]:
    """Refresh this box's recorded ranges, each then forgotten (unless widened meanwhile).
    `conn` must be in autocommit mode and idle: the procedure refuses a transaction block."""
    done = []
    pending = conn.execute(
        "SELECT aggregate, start_ts, end_ts FROM sink_refresh_pending WHERE origin = %s"
        " ORDER BY aggregate",
        (origin,),
    ).fetchall()
    for name, start, end in pending:
        conn.execute(
            "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
            (name, start, end),
        )
        conn.execute(
            "DELETE FROM sink_refresh_pending WHERE origin = %s AND aggregate = %s"
            " AND start_ts = %s AND end_ts = %s",
            (origin, name, start, end),
        )
        log.info("timeseries sink: refreshed %s from %s to %s (late data)", name, start, end)
        done.append((name, start, end))
    return done
