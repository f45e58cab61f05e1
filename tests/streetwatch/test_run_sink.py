"""`streetwatch run` with a DSN configured: every reading lands once in PostgreSQL, through a
database outage in the middle of a live stream."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from streetwatch.localbroker import Mosquitto
from streetwatch.simulate import PublishReport
from streetwatch.sink.localpg import LocalPostgres
from tests.conftest import REPO
from tests.runkit import (
    FAULTS,
    RunProcess,
    all_analysed,
    publish,
    scenario,
    wait_until,
)

READING_TABLES = ("gps_fixes", "geomag_fields", "geomag_states", "drone_telemetry", "snapshots")


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    cluster = LocalPostgres().start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def site_with_sink(tmp_path: Path, dsn_env: str) -> Path:
    doc = yaml.safe_load((REPO / "devices.yaml").read_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    doc["timeseries"] = {"dsn_env": dsn_env, "flush_interval_ms": 200}
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


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


def test_every_reading_lands_once_through_a_database_outage(
    mosquitto: Mosquitto, postgres: LocalPostgres, tmp_path: Path, monkeypatch
) -> None:
    dsn = postgres.dsn(postgres.create_database("streetwatch_run"))
    monkeypatch.setenv("SW_TEST_PG_DSN", dsn)
    config = site_with_sink(tmp_path, "SW_TEST_PG_DSN")
    var = tmp_path / "var"
    messages = scenario(config)
    run = RunProcess(config, mosquitto, tmp_path / "run.log")
    reports: list[PublishReport] = []
    publisher = threading.Thread(target=lambda: reports.append(publish(messages, mosquitto)))
    publisher.start()
    wait_until(lambda: shipped(dsn)[0] > 200, 60, "the first readings in PostgreSQL")
    postgres.stop(mode="immediate")
    time.sleep(4.0)
    postgres.start()
    publisher.join(120)
    assert reports and reports[0].acked == len(messages)
    wait_until(
        lambda: all_analysed(var, len(messages) - FAULTS), 60, "every reading to be analysed"
    )
    expected = len(messages) - FAULTS
    wait_until(lambda: shipped(dsn)[0] >= expected, 90, "the backlog to drain into PostgreSQL")
    run.terminate()

    db = sqlite3.connect(var / "journal.sqlite")
    (journaled,) = db.execute("SELECT count(*) FROM readings").fetchone()
    db.close()
    assert journaled == expected
    rows, keys = shipped(dsn)
    assert rows == keys == expected
    assert "database" in (tmp_path / "run.log").read_text().lower()
    assert os.environ["SW_TEST_PG_DSN"] not in (tmp_path / "run.log").read_text()
