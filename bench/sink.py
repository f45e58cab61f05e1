"""Sink throughput: GPS fixes from the SQLite journal into PostgreSQL by binary COPY.

A journal of N GPS fixes (two vehicles) is written first; then a private PostgreSQL cluster
(fsync on) is started on a free loopback port and the schema migrated. The timer covers
`TimeseriesSink.drain()` only: read from SQLite and convert/validate (on the sink's worker
thread, one batch ahead), binary COPY into `gps_fixes` (in a savepoint; the staging +
ON CONFLICT path is only taken on a replay), move the cursor, commit — per batch. The sink's
session commits asynchronously unless --synchronous-commit. Rows are checked afterwards
(count and distinct keys).

The limit, in the same run on the same server: PostgreSQL's own COPY of the same rows into the
same table. The rows the sink wrote are exported (`psql \\copy ... TO`, text and binary), the
table is truncated (its unique index and BRIN index stay), and `psql \\copy gps_fixes FROM` loads
them back in one transaction, timed from psql's start to its exit; the faster format is the
limit (`limit_copy_rows_per_s`), and `ratio_to_copy` is the sink's rate over it.

    .venv/bin/python bench/sink.py [--rows 1000000] [--batch 20000] [--dsn DSN] [--profile]
                                   [--synchronous-commit]

`--dsn` uses an existing server instead (its database is dropped and created as
`streetwatch_bench`). Last line: `rows_per_s: N /s`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from ingest.config import SiteConfig  # noqa: E402
from ingest.journal import Journal  # noqa: E402
from ingest.readings import GpsFix, Reading, Stream, TimeFlag  # noqa: E402
from streetwatch.sink import TimeseriesSink, apply_migrations  # noqa: E402
from streetwatch.sink.localpg import LocalPostgres  # noqa: E402

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def write_journal(path: Path, rows: int) -> None:
    journal = Journal(path, synchronous="OFF")
    step = 50_000
    for start in range(0, rows, step):
        batch = []
        for i in range(start, min(rows, start + step)):
            ts = T0 + timedelta(milliseconds=500 * i)
            batch.append(
                Reading(
                    key=f"{i:024x}:0",
                    device_id=f"truck-{i % 2}",
                    stream=Stream.GPS,
                    device_ts=ts,
                    received_ts=ts + timedelta(milliseconds=80),
                    time_flag=TimeFlag.OK,
                    payload=GpsFix(
                        lat=31.2 + (i % 5000) * 1e-5,
                        lon=121.4 + (i % 3000) * 1e-5,
                        speed_kmh=32.5,
                        heading=181.0,
                        hdop=0.8,
                        sats=11,
                    ),
                )
            )
        journal.write(batch)
    journal.close()


def psql_copy(dsn: str, command: str) -> float:
    """Seconds `psql` takes to run one `\\copy` meta-command (connection and exit included)."""
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql not found (Debian: postgresql-client)")
    started = time.perf_counter()
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", command],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def copy_limit(dsn: str, work: Path, rows: int) -> dict[str, float]:
    """rows/s of `psql \\copy gps_fixes FROM` the same rows into the same (truncated) table,
    per format."""
    rates = {}
    for fmt in ("text", "binary"):
        dump = work / f"gps_fixes.{fmt}"
        psql_copy(dsn, f"\\copy gps_fixes TO '{dump}' WITH (FORMAT {fmt})")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE gps_fixes")
            conn.execute("CHECKPOINT")
        elapsed = psql_copy(dsn, f"\\copy gps_fixes FROM '{dump}' WITH (FORMAT {fmt})")
        with psycopg.connect(dsn) as conn:
            count = conn.execute("SELECT count(*) FROM gps_fixes").fetchone()[0]  # type: ignore[index]
        if count != rows:
            raise SystemExit(f"psql \\copy ({fmt}) loaded {count} rows, not {rows}")
        rates[fmt] = rows / elapsed
        print(
            f"limit: psql \\copy gps_fixes FROM a {fmt} file ({dump.stat().st_size / 1e6:.0f} MB),"
            f" same rows, same table and indexes, one transaction: {elapsed:.2f} s ="
            f" {rates[fmt]:,.0f} rows/s"
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--dsn", help="an existing server (its streetwatch_bench is recreated)")
    parser.add_argument("--profile", action="store_true", help="cProfile the drain")
    parser.add_argument(
        "--synchronous-commit", action="store_true", help="wait for each commit's WAL flush"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="streetwatch-bench-sink-"))
    cluster: LocalPostgres | None = None
    try:
        journal_path = work / "journal.sqlite"
        started = time.perf_counter()
        write_journal(journal_path, args.rows)
        print(f"journal: {args.rows} GPS fixes written in {time.perf_counter() - started:.1f} s")

        if args.dsn:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS streetwatch_bench WITH (FORCE)")
                conn.execute("CREATE DATABASE streetwatch_bench")
            dsn = psycopg.conninfo.make_conninfo(args.dsn, dbname="streetwatch_bench")
        else:
            cluster = LocalPostgres().start()  # its own dir: the postgres user must reach it
            dsn = cluster.create_database("streetwatch_bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            mode = apply_migrations(conn).mode.value

        config = SiteConfig.model_validate(
            {
                "site": {"id": "bench"},
                "timeseries": {
                    "batch_size": args.batch,
                    "synchronous_commit": args.synchronous_commit,
                },
                "devices": [{"id": "truck-0", "kind": "gps"}, {"id": "truck-1", "kind": "gps"}],
            }
        )
        sink = TimeseriesSink(config, journal_path, dsn=dsn)
        sink.connect()
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        shipped = sink.drain()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        sink.close()

        with psycopg.connect(dsn) as conn:
            count, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT key) FROM gps_fixes"
            ).fetchone()  # type: ignore[misc]
        if not (shipped == count == distinct == args.rows):
            raise SystemExit(f"lost or duplicated rows: {shipped=} {count=} {distinct=}")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        print(
            f"PostgreSQL {server} ({mode} mode), batch {args.batch}, synchronous_commit"
            f" {'on' if args.synchronous_commit else 'off'}: {count} rows in"
            f" {elapsed:.2f} s = {args.rows / elapsed:,.0f} rows/s, lost 0, duplicates 0"
        )
        rate = args.rows / elapsed
        limit = max(copy_limit(dsn, work, args.rows).values())
        print(f"limit_copy_rows_per_s: {limit:.0f} /s")
        print(f"ratio_to_copy: {rate / limit:.2f}")
        print(f"rows_per_s: {rate:.0f} /s")
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
