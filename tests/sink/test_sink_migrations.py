"""Migrations against a real PostgreSQL: from empty, re-applied, concurrent, mode selection."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from streetwatch.sink.migrate import MIGRATIONS, Mode, apply_migrations, migrations_for

TABLES = [
    "case_events",
    "drone_telemetry",
    "geomag_fields",
    "geomag_states",
    "gps_fixes",
    "metrics",
    "observations",
    "schema_migrations",
    "sink_cursors",
    "sink_refresh_pending",
    "sink_rejects",
    "snapshots",
]
VIEWS = [
    "case_disposal",
    "case_figures_daily",
    "metrics_hourly",
    "occupancy_hourly",
    "vehicle_distance_daily",
    "violations_daily",
]


def _tables(conn: psycopg.Connection, kind: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = %s ORDER BY 1",
        (kind,),
    ).fetchall()
    return [r[0] for r in rows]


def test_from_empty_then_reapplied(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        first = apply_migrations(conn)
        assert first.mode is Mode.PLAIN  # Debian's registry has no timescaledb package
        assert first.applied == [1, 2, 3, 4, 5, 6]
        assert first.current == 6
        assert _tables(conn, "r") == TABLES
        assert _tables(conn, "v") == VIEWS
        brin = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING brin (ts)%'"
        ).fetchone()
        assert brin == (8,)
        recorded = conn.execute(
            "SELECT version, name, mode FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert recorded == [
            (1, "tables", "plain"),
            (2, "time_layout", "plain"),
            (3, "aggregates", "plain"),
            (4, "refresh_pending", "plain"),
            (5, "case_figures", "plain"),
            (6, "metrics", "plain"),
        ]

        again = apply_migrations(conn)
        assert again.applied == []
        assert again.current == 6
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (6,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_concurrent_boxes_take_turns(pg_dsn: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                results.append(apply_migrations(conn).applied)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [], [1, 2, 3, 4, 5, 6]]


def test_failed_migration_leaves_schema_untouched(pg_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            apply_migrations(conn, folder)
        assert _tables(conn, "r") == []
        (folder / "0002_broken.sql").write_text("CREATE TABLE b (x int);")
        assert apply_migrations(conn, folder).applied == [1, 2]


def test_each_mode_gets_its_variant() -> None:
    plain = {m.version: m.path.name for m in migrations_for(Mode.PLAIN)}
    timescale = {m.version: m.path.name for m in migrations_for(Mode.TIMESCALE)}
    assert plain[1] == timescale[1] == "0001_tables.sql"
    assert plain[2].endswith(".plain.sql") and timescale[2].endswith(".timescale.sql")
    assert "create_hypertable" in (MIGRATIONS / timescale[2]).read_text()
    cagg = (MIGRATIONS / timescale[3]).read_text()
    assert cagg.count("timescaledb.continuous") == 3
    assert cagg.count("add_continuous_aggregate_policy") == 3
    metrics = (MIGRATIONS / timescale[6]).read_text()
    assert "create_hypertable('metrics'" in metrics
    assert "metrics_hourly" in metrics and "timescaledb.continuous" in metrics
    assert plain[6] == "0006_metrics.plain.sql"


def test_misnamed_or_incomplete_migrations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("")
    with pytest.raises(ValueError, match="NNNN_name"):
        migrations_for(Mode.PLAIN, tmp_path)
    (tmp_path / "1_bad.sql").unlink()
    (tmp_path / "0001_x.timescale.sql").write_text("")
    with pytest.raises(ValueError, match="both variants"):
        migrations_for(Mode.PLAIN, tmp_path)


def test_plain_schema_refuses_a_timescale_switch(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
        conn.execute("UPDATE schema_migrations SET mode = 'timescale'")
        with pytest.raises(RuntimeError, match="timescaledb extension is missing"):
            apply_migrations(conn)
