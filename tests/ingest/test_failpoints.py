"""Failpoints: armed from the environment, they SIGKILL the process on the armed pass."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ingest.failpoints import ENV, parse
from tests.conftest import REPO

CHILD = """
from ingest import failpoints
for n in range(1, 6):
    print(n, flush=True)
    failpoints.reach("journal.committed")
"""


def test_parse_reads_names_and_counts() -> None:
    assert parse("") == {}
    assert parse("journal.committed=3, feed.sent") == {"journal.committed": 3, "feed.sent": 1}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("journal.comitted=1", "unknown failpoint 'journal.comitted'"),
        ("feed.sent=x", "needs a whole count"),
        ("feed.sent=0", "must count from 1"),
    ],
)
def test_parse_names_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse(spec)


def run_child(spec: str | None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO)} | ({ENV: spec} if spec else {})
    return subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_the_process_is_killed_on_the_armed_pass() -> None:
    result = run_child("journal.committed=3")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["1", "2", "3"]
    assert "failpoint journal.committed reached (pass 3)" in result.stderr


def test_unarmed_points_do_nothing() -> None:
    assert run_child(None).stdout.split() == ["1", "2", "3", "4", "5"]
    assert run_child("feed.sent=1").returncode == 0
