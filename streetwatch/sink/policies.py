"""Chunk interval, compression and retention from the `timeseries:` config, set at every start.

These live in code rather than in migrations because they are settings an operator changes.
At every connect the sink reads what the TimescaleDB catalog holds
(`timescaledb_information.dimensions`, `.hypertables`, `.jobs`), works out what differs from
the config (`plan_policies`, pure) and changes only that, in one transaction under the
migrations' advisory lock. So boxes connecting together take turns instead of failing with
`tuple concurrently updated`, and a reconnect with unchanged settings touches nothing (no
background job is removed and re-added).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import sql

from ingest.config import Timeseries
from streetwatch.sink.migrate import LOCK_ID, Mode

log = logging.getLogger("streetwatch.sink")

# table -> (segment by, order by) for TimescaleDB compression. The unique key's columns are in
# one of the two, as TimescaleDB wants for unique constraints on compressed chunks.
HYPERTABLES: dict[str, tuple[str, str]] = {
    "gps_fixes": ("device_id", "ts DESC, key"),
    "geomag_fields": ("device_id", "ts DESC, key"),
    "geomag_states": ("device_id", "ts DESC, key"),
    "drone_telemetry": ("device_id", "ts DESC, key"),
    "snapshots": ("device_id", "ts DESC, key"),
    "observations": ("device_id", "ts DESC, key"),
    "metrics": ("device_id, metric", "ts DESC, key"),
    "case_events": ("", "ts DESC, case_id, event"),
}

Statement = tuple[str, tuple]
"""SQL text and its parameters."""


@dataclass
class Current:
    """What the catalog says about one hypertable. A job whose setting is not an interval
    (or is absent) reads as None, which never equals a wanted value."""

    chunk: timedelta | None = None
    compression_enabled: bool = False
    compress_after: list[timedelta | None] = field(default_factory=list)
    drop_after: list[timedelta | None] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    table: str
    setting: str
    """`chunk_interval`, `compression` or `retention`."""
    old: str
    new: str
    statements: list[Statement]


def _show(value: timedelta | None) -> str:
    if value is None:
        return "none"
    if value % timedelta(days=1) == timedelta(0):
        return f"{value.days} day{'' if value.days == 1 else 's'}"
    return f"{value / timedelta(hours=1):g} hours"


def _jobs(values: list[timedelta | None]) -> str:
    return ", ".join(_show(v) for v in values) if values else "none"


def wanted(settings: Timeseries) -> tuple[timedelta, timedelta | None, timedelta | None]:
    return (
        timedelta(hours=settings.chunk_interval_h),
        None
        if settings.compress_after_days is None
        else timedelta(days=settings.compress_after_days),
        None if settings.retention_days is None else timedelta(days=settings.retention_days),
    )


def plan_policies(settings: Timeseries, current: dict[str, Current]) -> list[Change]:
    """The changes that bring the catalog to the config; empty when it already matches."""
    chunk, compress, drop = wanted(settings)
    changes: list[Change] = []
    for table, (segment_by, order_by) in HYPERTABLES.items():
        now = current.get(table, Current())
        if now.chunk != chunk:
            changes.append(
                Change(
                    table, "chunk_interval", _show(now.chunk), _show(chunk),
                    [("SELECT set_chunk_time_interval(%s, %s::interval)", (table, chunk))],
                )
            )  # fmt: skip
        if now.compress_after != ([] if compress is None else [compress]):
            statements: list[Statement] = []
            if compress is not None and not now.compression_enabled:
                alter = sql.SQL(
                    "ALTER TABLE {} SET (timescaledb.compress,"
                    " timescaledb.compress_segmentby = {}, timescaledb.compress_orderby = {})"
                ).format(sql.Identifier(table), sql.Literal(segment_by), sql.Literal(order_by))
                statements.append((alter.as_string(None), ()))
            if now.compress_after:
                statements.append(
                    ("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
                )
            if compress is not None:
                statements.append(
                    ("SELECT add_compression_policy(%s, %s::interval)", (table, compress))
                )
            changes.append(
                Change(table, "compression", _jobs(now.compress_after), _show(compress), statements)
            )
        if now.drop_after != ([] if drop is None else [drop]):
            statements = []
            if now.drop_after:
                statements.append(
                    ("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
                )
            if drop is not None:
                statements.append(("SELECT add_retention_policy(%s, %s::interval)", (table, drop)))
            changes.append(
                Change(table, "retention", _jobs(now.drop_after), _show(drop), statements)
            )
    return changes


_CURRENT = {
    "dimensions": (
        "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = current_schema() AND column_name = 'ts'"
    ),
    "hypertables": (
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema()"
    ),
    "jobs": (
        "SELECT hypertable_name, proc_name, CASE WHEN config->>%s ~ '^[-+]?[0-9]+$' THEN NULL"
        " ELSE (config->>%s)::interval END FROM timescaledb_information.jobs"
        " WHERE hypertable_schema = current_schema() AND proc_name = %s ORDER BY job_id"
    ),
}


def read_current(conn: psycopg.Connection) -> dict[str, Current]:
    current: dict[str, Current] = {}
    for table, interval in conn.execute(_CURRENT["dimensions"]).fetchall():
        current.setdefault(table, Current()).chunk = interval
    for table, enabled in conn.execute(_CURRENT["hypertables"]).fetchall():
        current.setdefault(table, Current()).compression_enabled = bool(enabled)
    for key, proc, attr in (
        ("compress_after", "policy_compression", "compress_after"),
        ("drop_after", "policy_retention", "drop_after"),
    ):
        for table, _, value in conn.execute(_CURRENT["jobs"], (key, key, proc)).fetchall():
            getattr(current.setdefault(table, Current()), attr).append(value)
    return current


def apply_policies(conn: psycopg.Connection, settings: Timeseries, mode: Mode) -> list[Change]:
    """Bring the policies to the config (TimescaleDB); plain PostgreSQL enforces retention."""
    if mode is Mode.TIMESCALE:
        return _timescale(conn, settings)
    enforce_retention(conn, settings)
    return []


def _timescale(conn: psycopg.Connection, settings: Timeseries) -> list[Change]:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        changes = plan_policies(settings, read_current(conn))
        for change in changes:
            for statement, params in change.statements:
                conn.execute(statement, params)  # type: ignore[arg-type]
    for change in changes:
        log.log(
            logging.INFO
            if change.old == "none" or change.setting == "chunk_interval"
            else logging.WARNING,
            "TimescaleDB policy of %s: %s %s -> %s (from this box's timeseries settings; "
            "every box writing to this database should have the same)",
            change.table,
            change.setting,
            change.old,
            change.new,
        )
    if not changes:
        log.debug("TimescaleDB policies already match the timeseries settings")
    return changes


def enforce_retention(conn: psycopg.Connection, settings: Timeseries) -> int:
    """Plain PostgreSQL has no retention jobs: the sink deletes expired rows itself (hourly)."""
    if settings.retention_days is None:
        return 0
    deleted = 0
    with conn.transaction():
        for table in HYPERTABLES:
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE ts < now() - %s::interval").format(
                    sql.Identifier(table)
                ),
                (f"{settings.retention_days} days",),
            )
            deleted += cur.rowcount
    if deleted:
        log.info("retention: deleted %d rows older than %d days", deleted, settings.retention_days)
    return deleted
