"""A stand-in for the parts of TimescaleDB the sink calls, in plain PostgreSQL (TimescaleDB is
not packaged for Debian, so the tests cannot run the real one).

It has the catalog views the sink reads (`timescaledb_information.hypertables`, `.dimensions`,
`.jobs`, as tables), the policy functions it calls (`set_chunk_time_interval`,
`add/remove_compression_policy`, `add/remove_retention_policy`), `approximate_row_count` and
the `refresh_continuous_aggregate` procedure. Every call is logged in `fake_ts_calls`.

Like TimescaleDB's catalog updates, two transactions changing policies at the same time do
not both succeed: each policy function takes a transaction-level advisory lock with
`pg_try_advisory_xact_lock` and fails with `tuple concurrently updated` when another
transaction holds it (after a short sleep that widens the window). Only the sink's own lock
(the real PostgreSQL advisory lock of the migrations) can keep two boxes apart.

What it does not model: the real functions' other parameters, the compression settings
(`ALTER TABLE ... SET (timescaledb.compress ...)` is refused by plain PostgreSQL, so seed
`compression_enabled` true), background jobs actually running.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from streetwatch.sink.policies import HYPERTABLES

_SQL = """
CREATE SCHEMA timescaledb_information;
CREATE TABLE timescaledb_information.hypertables (
    hypertable_schema name NOT NULL DEFAULT current_schema(),
    hypertable_name name NOT NULL,
    compression_enabled boolean NOT NULL
);
CREATE TABLE timescaledb_information.dimensions (
    hypertable_schema name NOT NULL DEFAULT current_schema(),
    hypertable_name name NOT NULL,
    dimension_number int NOT NULL DEFAULT 1,
    column_name name NOT NULL DEFAULT 'ts',
    time_interval interval
);
CREATE TABLE timescaledb_information.jobs (
    job_id serial PRIMARY KEY,
    proc_name name NOT NULL,
    hypertable_schema name NOT NULL DEFAULT current_schema(),
    hypertable_name name NOT NULL,
    config jsonb NOT NULL
);
CREATE TABLE fake_ts_calls (
    id serial PRIMARY KEY,
    pid int NOT NULL DEFAULT pg_backend_pid(),
    fn text NOT NULL,
    args text NOT NULL
);

CREATE FUNCTION fake_ts_catalog_write(fn text, args text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(%(catalog_lock)s) THEN
        RAISE EXCEPTION 'tuple concurrently updated';
    END IF;
    PERFORM pg_sleep(0.02);
    INSERT INTO fake_ts_calls (fn, args) VALUES (fn, args);
END $$;

CREATE FUNCTION set_chunk_time_interval(hypertable regclass, chunk_time_interval interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fake_ts_catalog_write('set_chunk_time_interval', hypertable::text || ' '
                                  || chunk_time_interval::text);
    UPDATE timescaledb_information.dimensions SET time_interval = chunk_time_interval
     WHERE hypertable_name = hypertable::text;
END $$;

CREATE FUNCTION add_compression_policy(hypertable regclass, compress_after interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE id integer;
BEGIN
    PERFORM fake_ts_catalog_write('add_compression_policy', hypertable::text || ' '
                                  || compress_after::text);
    INSERT INTO timescaledb_information.jobs (proc_name, hypertable_name, config)
    VALUES ('policy_compression', hypertable::text,
            jsonb_build_object('hypertable_id', 1, 'compress_after', compress_after::text))
    RETURNING job_id INTO id;
    RETURN id;
END $$;

CREATE FUNCTION add_retention_policy(relation regclass, drop_after interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE id integer;
BEGIN
    PERFORM fake_ts_catalog_write('add_retention_policy', relation::text || ' '
                                  || drop_after::text);
    INSERT INTO timescaledb_information.jobs (proc_name, hypertable_name, config)
    VALUES ('policy_retention', relation::text,
            jsonb_build_object('hypertable_id', 1, 'drop_after', drop_after::text))
    RETURNING job_id INTO id;
    RETURN id;
END $$;

CREATE FUNCTION remove_compression_policy(hypertable regclass, if_exists boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fake_ts_catalog_write('remove_compression_policy', hypertable::text);
    DELETE FROM timescaledb_information.jobs
     WHERE hypertable_name = hypertable::text AND proc_name = 'policy_compression';
    RETURN true;
END $$;

CREATE FUNCTION remove_retention_policy(relation regclass, if_exists boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fake_ts_catalog_write('remove_retention_policy', relation::text);
    DELETE FROM timescaledb_information.jobs
     WHERE hypertable_name = relation::text AND proc_name = 'policy_retention';
    RETURN true;
END $$;

CREATE FUNCTION approximate_row_count(relation regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %%s', relation) INTO n;
    RETURN n;
END $$;

CREATE PROCEDURE refresh_continuous_aggregate(
    continuous_aggregate regclass, window_start timestamptz, window_end timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fake_ts_refresh_fails) THEN
        RAISE EXCEPTION 'refresh failed (fake)';
    END IF;
    INSERT INTO fake_ts_calls (fn, args) VALUES ('refresh_continuous_aggregate',
        continuous_aggregate::text || ' ' || to_char(window_start AT TIME ZONE 'UTC',
        'YYYY-MM-DD"T"HH24:MI') || ' ' || to_char(window_end AT TIME ZONE 'UTC',
        'YYYY-MM-DD"T"HH24:MI'));
END $$;
CREATE TABLE fake_ts_refresh_fails (x int);
"""

CATALOG_LOCK = 4242


def install(
    conn: psycopg.Connection,
    *,
    chunk: timedelta = timedelta(days=7),
    compression_enabled: bool = True,
) -> None:
    """Create the fake in `conn`'s database, with each sink table a "hypertable" of `chunk`."""
    with conn.transaction():
        conn.execute(_SQL % {"catalog_lock": CATALOG_LOCK})  # type: ignore[arg-type]
        for table in HYPERTABLES:
            conn.execute(
                "INSERT INTO timescaledb_information.hypertables"
                " (hypertable_name, compression_enabled) VALUES (%s, %s)",
                (table, compression_enabled),
            )
            conn.execute(
                "INSERT INTO timescaledb_information.dimensions (hypertable_name, time_interval)"
                " VALUES (%s, %s)",
                (table, chunk),
            )


def calls(conn: psycopg.Connection, fn: str | None = None) -> list[tuple[int, str, str]]:
    """(pid, function, arguments) of every logged call, in order."""
    rows = conn.execute("SELECT pid, fn, args FROM fake_ts_calls ORDER BY id").fetchall()
    return [r for r in rows if fn is None or r[1] == fn]


def jobs(conn: psycopg.Connection) -> list[tuple[int, str, str, str]]:
    """(job_id, table, proc, config setting) of every job."""
    return conn.execute(
        "SELECT job_id, hypertable_name, proc_name,"
        " coalesce(config->>'compress_after', config->>'drop_after')"
        " FROM timescaledb_information.jobs ORDER BY job_id"
    ).fetchall()  # type: ignore[return-value]
