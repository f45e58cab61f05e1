"""Chunk interval, compression and retention from the `timeseries:` config, set at every start.

These live in code rather than in migrations because they are settings an operator changes:
a migration runs once, this re-applies the current values idempotently (remove + add).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ingest.config import Timeseries
from streetwatch.sink.migrate import Mode

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
    "case_events": ("", "ts DESC, case_id, event"),
}


def apply_policies(conn: psycopg.Connection, settings: Timeseries, mode: Mode) -> None:
    if mode is Mode.TIMESCALE:
        _timescale(conn, settings)
    else:
        enforce_retention(conn, settings)


def _timescale(conn: psycopg.Connection, settings: Timeseries) -> None:
    chunk = f"{settings.chunk_interval_h} hours"
    with conn.transaction():
        compressed = dict(
            conn.execute(
                "SELECT hypertable_name, compression_enabled"
                " FROM timescaledb_information.hypertables"
            ).fetchall()
        )
        for table, (segment_by, order_by) in HYPERTABLES.items():
            conn.execute("SELECT set_chunk_time_interval(%s, %s::interval)", (table, chunk))
            conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
            if settings.compress_after_days is not None:
                if not compressed.get(table):
                    conn.execute(
                        sql.SQL(
                            "ALTER TABLE {} SET (timescaledb.compress,"
                            " timescaledb.compress_segmentby = {},"
                            " timescaledb.compress_orderby = {})"
                        ).format(
                            sql.Identifier(table), sql.Literal(segment_by), sql.Literal(order_by)
                        )
                    )
                conn.execute(
                    "SELECT add_compression_policy(%s, %s::interval)",
                    (table, f"{settings.compress_after_days} days"),
                )
            conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
            if settings.retention_days is not None:
                conn.execute(
                    "SELECT add_retention_policy(%s, %s::interval)",
                    (table, f"{settings.retention_days} days"),
                )
    log.info(
        "TimescaleDB policies: chunks of %s, compress after %s days, keep %s days",
        chunk,
        settings.compress_after_days,
        settings.retention_days,
    )


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
