"""The TimescaleDB/PostgreSQL sink's database stopped: crashed for a long outage while the
street keeps publishing, and already down when `streetwatch run` starts. The sink is a side
branch: ingestion, analysis and evidence packaging go on while the database is away, the sink's
backlog on /metrics rises, and when the database returns it falls to nothing with every
journaled reading in PostgreSQL exactly once (rows = distinct keys = journaled)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.simulate import PublishReport
from streetwatch.sink.localpg import LocalPostgres, pg_bindir
from tests.faults.conftest import Reliability
from tests.runkit import (
    FAULTS,
    CaseSystem,
    RunProcess,
    account,
    all_analysed,
    cases_of,
    delivered,
    demo_site,
    journaled,
    metric,
    ops_up,
    publish,
    query,
    scenario,
    settled,
    wait_until,
)

READING_TABLES = (
    "gps_fixes",
    "geomag_fields",
    "geomag_states",
    "drone_telemetry",
    "metrics",
    "snapshots",
)
DSN_ENV = "SW_FAULT_PG_DSN"


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    """A private cluster this test may crash, stop and restart."""
    try:
        pg_bindir()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    cluster = LocalPostgres(settings={"fsync": "off"}).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def shipped(dsn: str) -> tuple[int, int]:
    """(rows, distinct keys) over every reading table; (-1, -1) while the database is down or
    before the sink's migrations have created the tables."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            rows = keys = 0
            for table in READING_TABLES:
                n, k = conn.execute(f"SELECT count(*), count(DISTINCT key) FROM {table}").fetchone()
                rows, keys = rows + n, keys + k
            return rows, keys
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return -1, -1


def backlog(port: int) -> float:
    return metric(port, "streetwatch_sink_sink_backlog")


def analysed(var: Path) -> int:
    rows = query(var / "journal.sqlite", "SELECT seq FROM cursors WHERE name = 'analysis'")
    return rows[0][0] if rows else 0


def packaged(var: Path) -> int:
    return sum(state != "opened" for _, _, state in cases_of(var))


@dataclass
class Outage:
    """What the pipeline did while the database was away."""

    seconds: float = 0.0
    journaled: int = 0
    analysed: int = 0
    packaged: int = 0
    backlog: list[float] = field(default_factory=list)


def watch_outage(port: int, var: Path, seconds: float) -> Outage:
    """Sample the backlog and the pipeline's progress for `seconds` (the database is down)."""
    started = time.monotonic()
    before = (journaled(var), analysed(var), packaged(var))
    outage = Outage()
    while time.monotonic() - started < seconds:
        outage.backlog.append(backlog(port))
        time.sleep(0.5)
    outage.seconds = time.monotonic() - started
    outage.journaled = journaled(var) - before[0]
    outage.analysed = analysed(var) - before[1]
    outage.packaged = packaged(var) - before[2]
    return outage


def sink_site(tmp_path: Path, case_system: CaseSystem) -> Path:
    return demo_site(
        tmp_path,
        case_system.url,
        timeseries={
            "dsn_env": DSN_ENV,
            "flush_interval_ms": 200,
            "retry": {"min_delay_s": 0.5, "max_delay_s": 4.0},
        },
    )


def finish(
    tmp_path: Path,
    reliability: Reliability,
    *,
    what: str,
    run: RunProcess,
    case_system: CaseSystem,
    config: Path,
    dsn: str,
    messages: list,
    reports: list[PublishReport],
    publisher: threading.Thread,
    port: int,
    outages: list[Outage],
) -> None:
    """Wait for the backlog to drain, then account for every reading and case."""
    var = tmp_path / "var"
    publisher.join(120)
    assert reports and reports[0].acked == len(messages), reports
    expected = len(messages) - FAULTS
    wait_until(lambda: all_analysed(var, expected), 90, "every reading analysed")
    wait_until(lambda: shipped(dsn)[0] >= journaled(var), 90, "the backlog to drain")
    wait_until(lambda: backlog(port) == 0, 30, "the sink backlog on /metrics back to 0")
    wait_until(lambda: settled(var) and delivered(var), 60, "every case delivered")
    run.terminate()
    case_system.close()

    books = account(config, var, expected, case_system=case_system)
    rows, keys = shipped(dsn)
    db_lost = books.readings_journaled - keys
    db_doubled = rows - keys
    reliability.record(
        "fault",
        what,
        tried=len(outages),
        lost=books.lost + books.cases_doubled + abs(db_lost) + db_doubled,
        outages_s=[round(o.seconds, 1) for o in outages],
        journaled_in_outages=[o.journaled for o in outages],
        analysed_in_outages=[o.analysed for o in outages],
        packaged_in_outages=[o.packaged for o in outages],
        peak_sink_backlog=[max(o.backlog) for o in outages],
        pg_rows=rows,
        pg_distinct_keys=keys,
        **books.as_dict(),
    )
    log = run.log_text()
    assert "timeseries sink: database unreachable" in log, log[-3000:]
    assert "database back after" in log, log[-3000:]
    assert dsn not in log
    assert rows == keys == books.readings_journaled == expected, (rows, keys, books)
    assert books.readings_lost == 0 and books.dead_letters_kept == FAULTS, books
    assert books.cases_doubled == 0 and books.cases_undelivered == 0, books
    assert books.cases > 0 and books.packages_verified == books.cases, books
    assert books.verify_ok, books.verify_output
    # The sink is a side branch: the rest of the pipeline did not wait for the database, and
    # the backlog on /metrics grew by (at least) what was journaled meanwhile.
    for outage in outages:
        assert outage.journaled > 1000 and outage.analysed > 1000, outage
        assert max(outage.backlog) - outage.backlog[0] >= outage.journaled * 0.8, outage


def database_stopped_mid_stream(
    tmp_path: Path,
    reliability: Reliability,
    mosquitto: Mosquitto,
    postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
    *,
    cycles: int,
    down_s: float,
    seed: int,
) -> None:
    """`cycles` times: crash PostgreSQL (immediate stop) once rows are flowing, keep it down
    for `down_s` while the street publishes, start it again."""
    dsn = postgres.dsn(postgres.create_database("streetwatch_fault"))
    monkeypatch.setenv(DSN_ENV, dsn)
    case_system = CaseSystem(fail_first=0)
    config = sink_site(tmp_path, case_system)
    var = tmp_path / "var"
    messages = scenario(config, duration_s=90.0 * (cycles * (down_s + 6.0) + 2.0), seed=seed)
    rng = random.Random(seed)
    port = free_port()
    run = RunProcess(config, mosquitto, tmp_path / "run.log", "--http-port", str(port))
    wait_until(lambda: ops_up(port), 30, "the ops endpoint")
    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto)), daemon=True
    )
    publisher.start()
    outages = []
    for _ in range(cycles):
        flowing = max(200, shipped(dsn)[0] + 200)
        wait_until(lambda n=flowing: shipped(dsn)[0] > n, 60, "readings flowing into PostgreSQL")
        time.sleep(rng.uniform(0.0, 2.0))
        postgres.stop(mode="immediate")
        outages.append(watch_outage(port, var, down_s))
        postgres.start()
    finish(
        tmp_path,
        reliability,
        what="database stopped",
        run=run,
        case_system=case_system,
        config=config,
        dsn=dsn,
        messages=messages,
        reports=reports,
        publisher=publisher,
        port=port,
        outages=outages,
    )
    assert all(outage.packaged >= 1 for outage in outages), outages


def database_down_at_start(
    tmp_path: Path,
    reliability: Reliability,
    mosquitto: Mosquitto,
    postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
    *,
    down_s: float,
    seed: int,
) -> None:
    """PostgreSQL is stopped before `streetwatch run` starts: the run starts anyway, ingests
    and analyses, and ships everything once the database is started."""
    dsn = postgres.dsn(postgres.create_database("streetwatch_fault_start"))
    postgres.stop(mode="fast")
    monkeypatch.setenv(DSN_ENV, dsn)
    case_system = CaseSystem(fail_first=0)
    config = sink_site(tmp_path, case_system)
    var = tmp_path / "var"
    messages = scenario(config, duration_s=90.0 * (down_s + 4.0), seed=seed)
    port = free_port()
    run = RunProcess(config, mosquitto, tmp_path / "run.log", "--http-port", str(port))
    wait_until(lambda: ops_up(port), 30, "the ops endpoint")
    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto)), daemon=True
    )
    publisher.start()
    outage = watch_outage(port, var, down_s)
    assert shipped(dsn) == (-1, -1)
    postgres.start()
    finish(
        tmp_path,
        reliability,
        what="database stopped (down when streetwatch starts)",
        run=run,
        case_system=case_system,
        config=config,
        dsn=dsn,
        messages=messages,
        reports=reports,
        publisher=publisher,
        port=port,
        outages=[outage],
    )


def test_database_crashed_for_20_s_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path,
    reliability: Reliability,
    mosquitto: Mosquitto,
    postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database_stopped_mid_stream(
        tmp_path, reliability, mosquitto, postgres, monkeypatch, cycles=1, down_s=20.0, seed=13
    )


def test_database_down_when_the_run_starts_then_everything_is_shipped(
    tmp_path: Path,
    reliability: Reliability,
    mosquitto: Mosquitto,
    postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database_down_at_start(
        tmp_path, reliability, mosquitto, postgres, monkeypatch, down_s=8.0, seed=17
    )


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_database_crashed_again_and_again_mid_stream(
    tmp_path: Path,
    reliability: Reliability,
    mosquitto: Mosquitto,
    postgres: LocalPostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database_stopped_mid_stream(
        tmp_path, reliability, mosquitto, postgres, monkeypatch, cycles=6, down_s=20.0, seed=31
    )
