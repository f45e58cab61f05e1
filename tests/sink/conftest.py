"""A private PostgreSQL cluster for the sink tests, and a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from streetwatch.sink.localpg import LocalPostgres, pg_bindir

_names = itertools.count()


def _require_server() -> None:
    try:
        pg_bindir()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    if shutil.which("runuser") is None:
        pytest.fail("runuser is needed to run PostgreSQL as the postgres user")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    """One cluster for the session; tests that stop the server start their own (`pg_private`)."""
    _require_server()
    cluster = LocalPostgres(settings={"fsync": "off"}).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_private() -> Iterator[LocalPostgres]:
    """A cluster this test may stop, crash and restart."""
    _require_server()
    cluster = LocalPostgres(settings={"fsync": "off"}).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_cluster: LocalPostgres) -> Iterator[str]:
    name = f"sink_{next(_names)}"
    dsn = pg_cluster.create_database(name)
    yield dsn
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"
