"""The TimescaleDB paths against a real PostgreSQL: the fallback when the extension cannot be
enabled (including a FATAL that closes the connection), boxes connecting at once under the
real advisory lock, policies changed only where they differ, late data refreshing the
continuous aggregates, row estimates. TimescaleDB itself is stood in for by
`tests/sink/faketimescale.py` (it is not packaged for Debian)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

import streetwatch.sink.migrate as migrate
import streetwatch.sink.sink as sinkmod
from ingest.readings import GeomagState, Reading, Stream, TimeFlag
from streetwatch.sink import TimeseriesSink
from streetwatch.sink.cli import row_estimates
from streetwatch.sink.migrate import ExtensionFacts, Mode, apply_migrations, read_facts
from streetwatch.sink.policies import HYPERTABLES, apply_policies, plan_policies, read_current
from streetwatch.sink.refresh import MARGIN
from tests.sink import faketimescale
from tests.sink.sinkdata import gps, journal_with, settings, site

# -- falling back ----------------------------------------------------------------------------


def test_facts_from_a_real_server(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert read_facts(conn) == ExtensionFacts(None, False, False)
        conn.execute("CREATE ROLE box17 LOGIN")
        conn.execute("GRANT ALL ON SCHEMA public TO box17")
    try:
        with psycopg.connect(pg_dsn.replace("user=postgres", "user=box17")) as box:
            # shared_preload_libraries is for superusers (and pg_read_all_settings) only
            assert read_facts(box) == ExtensionFacts(None, False, None)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY box17")
            conn.execute("DROP ROLE box17")


def test_extension_unavailable_falls_back(
    pg_dsn: str, journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal_with(journal_path, [gps(i) for i in range(5)]).close()
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    with caplog.at_level(logging.INFO, "streetwatch.sink"):
        assert sink.drain() == 5
    sink.close()
    assert sink.mode is Mode.PLAIN
    assert "not installed on the server: plain PostgreSQL" in caplog.text


def test_installed_but_not_preloaded_falls_back_without_trying(
    pg_dsn: str, journal_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """What a real TimescaleDB 2.28 did: the files installed, the library not preloaded."""
    monkeypatch.setattr(migrate, "read_facts", lambda conn: ExtensionFacts(None, True, False))

    def never(connect: object) -> None:
        raise AssertionError("CREATE EXTENSION must not be tried when it cannot work")

    monkeypatch.setattr(migrate, "try_create_extension", never)
    journal_with(journal_path, [gps(i) for i in range(5)]).close()
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    with caplog.at_level(logging.INFO, "streetwatch.sink"):
        assert sink.drain() == 5
    sink.close()
    assert sink.mode is Mode.PLAIN
    assert "not in shared_preload_libraries" in caplog.text


def test_a_fatal_that_closes_the_connection_falls_back_and_the_sink_works(
    pg_dsn: str, journal_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """`FATAL: extension "timescaledb" must be preloaded` closes the connection it happens on.
    Here the server terminates the connection trying the extension (a real FATAL): the sink
    falls back to plain PostgreSQL and ships, instead of failing with 'the connection is
    closed' and retrying forever."""
    monkeypatch.setattr(migrate, "read_facts", lambda conn: ExtensionFacts(None, True, True))
    monkeypatch.setattr(
        migrate,
        "CREATE_EXTENSION",
        "DO $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); END $$",
    )
    journal_with(journal_path, [gps(i) for i in range(5)]).close()
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    with caplog.at_level(logging.INFO, "streetwatch.sink"):
        assert sink.drain() == 5
        assert sink.stats.get("connects") == 1
    sink.close()
    assert sink.mode is Mode.PLAIN
    assert "falling back to plain PostgreSQL" in caplog.text
    assert "terminating connection" in caplog.text
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM gps_fixes").fetchone() == (5,)
        assert conn.execute("SELECT DISTINCT mode FROM schema_migrations").fetchall() == [
            ("plain",)
        ]


def test_a_failed_probe_connection_is_an_outage_not_a_fallback(pg_dsn: str, monkeypatch) -> None:
    """Giving up TimescaleDB for good because of a transient connection failure would be
    wrong: that is raised, and the sink retries."""
    monkeypatch.setattr(migrate, "read_facts", lambda conn: ExtensionFacts(None, True, True))

    def unreachable() -> psycopg.Connection:
        raise psycopg.OperationalError("connection refused (test)")

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.OperationalError, match="connection refused"):
            apply_migrations(conn, connect=unreachable)
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


# -- policies: the lock, and only changes ----------------------------------------------------


def test_the_fake_catches_two_transactions_changing_policies_at_once(pg_dsn: str) -> None:
    """The check on the test's own stand-in: without a lock between them, the second of two
    boxes changing policies fails as TimescaleDB did ('tuple concurrently updated')."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
        faketimescale.install(conn)
    with psycopg.connect(pg_dsn) as first, psycopg.connect(pg_dsn) as second:
        first.execute("SELECT set_chunk_time_interval('gps_fixes', '1 day')")
        with pytest.raises(psycopg.errors.RaiseException, match="tuple concurrently updated"):
            second.execute("SELECT set_chunk_time_interval('gps_fixes', '1 day')")


def test_four_boxes_connecting_at_once_take_turns(pg_dsn: str) -> None:
    """Four boxes, each on its own connection, released together onto the migrate + policy
    path. The real advisory lock makes them take turns: one applies the schema and the 21
    policy changes, the other three find nothing to do; nobody fails."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        faketimescale.install(conn)
    barrier = threading.Barrier(4)
    results: list[tuple[list[int], int, int]] = []
    errors: list[BaseException] = []

    def box() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                barrier.wait(timeout=30)
                migrated = apply_migrations(conn)
                changes = apply_policies(conn, settings(), Mode.TIMESCALE)
                results.append((migrated.applied, len(changes), conn.info.backend_pid))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=box) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r[0] for r in results) == [[], [], [], [1, 2, 3, 4, 5, 6]]
    assert sorted(r[1] for r in results) == [0, 0, 0, 3 * len(HYPERTABLES)]
    [winner] = [r[2] for r in results if r[1]]
    with psycopg.connect(pg_dsn) as conn:
        calls = faketimescale.calls(conn)
        assert {pid for pid, _, _ in calls} == {winner}
        assert len(faketimescale.calls(conn, "set_chunk_time_interval")) == len(HYPERTABLES)
        assert faketimescale.calls(conn, "remove_compression_policy") == []
        assert len(faketimescale.jobs(conn)) == 2 * len(HYPERTABLES)


def test_reconnecting_restarts_no_job_and_a_change_touches_only_its_policy(
    pg_dsn: str,
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
        faketimescale.install(conn)
        assert len(apply_policies(conn, settings(), Mode.TIMESCALE)) == 3 * len(HYPERTABLES)
        jobs = faketimescale.jobs(conn)
        made = len(faketimescale.calls(conn))

        for _ in range(3):  # every reconnect of every box with the same settings
            assert apply_policies(conn, settings(), Mode.TIMESCALE) == []
        assert faketimescale.jobs(conn) == jobs  # same job ids: nothing removed and re-added
        assert len(faketimescale.calls(conn)) == made
        assert plan_policies(settings(), read_current(conn)) == []

        changed = apply_policies(conn, settings(retention_days=30), Mode.TIMESCALE)
        assert {c.setting for c in changed} == {"retention"}
        after = faketimescale.jobs(conn)
        compression = [j for j in jobs if j[2] == "policy_compression"]
        assert [j for j in after if j[2] == "policy_compression"] == compression
        assert {j[3] for j in after if j[2] == "policy_retention"} == {"30 days"}


# -- late data, row estimates ----------------------------------------------------------------


def _timescale_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink believes the (plain) schema is a TimescaleDB one, so it talks to the fake."""
    real = sinkmod.apply_migrations

    def as_timescale(conn: psycopg.Connection, **kwargs: object) -> migrate.MigrationResult:
        result = real(conn, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(result, mode=Mode.TIMESCALE, timescale_version="fake")

    monkeypatch.setattr(sinkmod, "apply_migrations", as_timescale)


def _states(start: datetime, n: int) -> list[Reading]:
    return [
        Reading(
            f"late-{start.timestamp():.0f}-{i}",
            "mag-1",
            Stream.GEOMAG,
            start + timedelta(minutes=30 * i),
            start + timedelta(minutes=30 * i),
            TimeFlag.OK,
            GeomagState(occupied=i % 2 == 0),
        )
        for i in range(n)
    ]


def _hour(ts: datetime) -> str:
    return ts.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def test_a_backlog_older_than_the_window_refreshes_occupancy(
    pg_dsn: str, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A box offline for 8 days ships its backlog: the hours behind occupancy_hourly's 7-day
    refresh window are refreshed once the sink has caught up; recent rows need nothing."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
        faketimescale.install(conn)
    _timescale_mode(monkeypatch)
    now = datetime.now(UTC)
    old = now - timedelta(days=8, hours=3)
    journal_with(journal_path, [*_states(old, 4), *_states(now - timedelta(hours=2), 2)]).close()
    sink = TimeseriesSink(site(batch_size=3), journal_path, dsn=pg_dsn)
    assert sink.drain() == 6
    assert sink.mode is Mode.TIMESCALE
    assert sink.stats.get("aggregate_refreshes") == 1
    sink.close()
    with psycopg.connect(pg_dsn) as conn:
        [(_, _, args)] = faketimescale.calls(conn, "refresh_continuous_aggregate")
        name, start, end = args.split()
        assert name == "occupancy_hourly"
        assert start == _hour(old)  # the bucket of the oldest late row...
        # ...to where the policy's window (less a margin) takes over: the second batch held
        # late and recent rows, and the recent part is the policy's
        edge = datetime.fromisoformat(_hour(now - timedelta(days=7) + MARGIN)) + timedelta(hours=1)
        assert end in {edge.strftime("%Y-%m-%dT%H:%M"), _hour(edge + timedelta(hours=1))}
        assert conn.execute("SELECT count(*) FROM sink_refresh_pending").fetchone() == (0,)
        assert row_estimates(conn, Mode.TIMESCALE)["geomag_states"] == 6
        assert len(faketimescale.jobs(conn)) == 2 * len(HYPERTABLES)  # the sink set them


def test_a_failed_refresh_is_kept_and_done_at_the_next_start(
    pg_dsn: str, journal_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_migrations(conn)
        faketimescale.install(conn)
        conn.execute("INSERT INTO fake_ts_refresh_fails VALUES (1)")
    _timescale_mode(monkeypatch)
    old = datetime.now(UTC) - timedelta(days=10)
    journal_with(journal_path, _states(old, 2)).close()
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    assert sink.drain() == 2
    assert sink.stats.get("refresh_errors") == 1
    assert "refresh failed (fake)" in caplog.text
    sink.close()  # a crash or a restart before the refresh worked
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT aggregate FROM sink_refresh_pending").fetchall() == [
            ("occupancy_hourly",)
        ]
        conn.execute("DELETE FROM fake_ts_refresh_fails")
    again = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    assert again.drain() == 0
    assert again.stats.get("aggregate_refreshes") == 1
    again.close()
    with psycopg.connect(pg_dsn) as conn:
        assert [
            c[2].split()[1] for c in faketimescale.calls(conn, "refresh_continuous_aggregate")
        ] == [_hour(old)]
        assert conn.execute("SELECT count(*) FROM sink_refresh_pending").fetchone() == (0,)


def test_plain_mode_records_no_refresh(pg_dsn: str, journal_path: Path) -> None:
    journal_with(journal_path, _states(datetime.now(UTC) - timedelta(days=30), 2)).close()
    sink = TimeseriesSink(site(), journal_path, dsn=pg_dsn)
    assert sink.drain() == 2
    sink.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM sink_refresh_pending").fetchone() == (0,)
        estimates = row_estimates(conn, Mode.PLAIN)
        assert set(estimates) == set(HYPERTABLES)


def test_the_probe_connection_reaches_the_same_database(pg_dsn: str) -> None:
    """`apply_migrations(conn)` without `connect` tries the extension on a connection made
    from `conn`'s own parameters."""
    with psycopg.connect(pg_dsn, autocommit=True, application_name="box-17") as conn:
        probe = migrate.same_server(conn)()
        try:
            same = "SELECT current_database(), current_user, inet_server_port()"
            assert probe.execute(same).fetchone() == conn.execute(same).fetchone()
            assert probe.info.backend_pid != conn.info.backend_pid
            assert probe.autocommit
        finally:
            probe.close()
