"""A private PostgreSQL cluster on a free loopback port, for tests and the sink benchmark.

`initdb`, `pg_ctl` and `postgres` refuse to run as root, so as root they run as the `postgres`
user (Debian's package creates it) through `runuser`; the cluster directory is handed to that
user. `stop()`/`start()` keep the port and the data, which is what outage tests need.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from streetwatch.localbroker import free_port

OWNER = "postgres"


def pg_bindir() -> Path:
    """The newest `/usr/lib/postgresql/*/bin` that has initdb (Debian's layout)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(make test installs Debian's postgresql)"
        )
    return Path(found[-1]).parent


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", OWNER, "--", *argv]


@dataclass
class LocalPostgres:
    """One throw-away cluster. Use `dsn(dbname)`; `create_database()` gives each test its own."""

    workdir: Path | None = None
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    _own_dir: bool = False

    def __post_init__(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="streetwatch-pg-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, OWNER, OWNER)
        self.bindir = pg_bindir()

    @property
    def datadir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={OWNER} dbname={dbname} connect_timeout=5"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            _as_owner([str(self.bindir / argv[0]), *argv[1:]]),
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout}")
        return result

    def init(self) -> LocalPostgres:
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.datadir), "-U", OWNER, "-A", "trust", "-E", "UTF8",
                "--no-sync", "--locale=C.UTF-8",
            )  # fmt: skip
        return self

    def start(self, timeout_s: float = 30) -> LocalPostgres:
        self.init()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.workdir),
            "max_connections": "50",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        log = self.workdir / "postgres.log"  # type: ignore[operator]
        result = self._run(
            "pg_ctl", "start", "-D", str(self.datadir), "-l", str(log), "-w",
            "-t", str(int(timeout_s)), "-o", opts, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres did not start: {result.stderr.strip()}\n{tail}")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `mode="immediate"` is a crash as far as clients can tell."""
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", check=False)

    def restart(self, pause_s: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(pause_s)
        self.start()

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop("immediate")
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
