"""kill -9 while packaging: afterwards there is no package or a complete one, the chain verifies,
and a restart finishes (or discards and redoes) what was pending."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evidence.cases import State
from evidence.keys import Signer
from evidence.ledger import Ledger
from evidence.package import package_dirs
from evidence.verify import verify_chain
from tests.evidence import evidence_crash_child as child

REPO = Path(__file__).resolve().parents[2]
N = 5


def _run(base: Path, point: str, kill_at: int, n: int = N) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.evidence.evidence_crash_child", str(base), point,
         str(kill_at), str(n)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _check(base: Path, expect_packages: int) -> None:
    root = base / "var" / "evidence"
    key = Signer.load_or_create(base / "key.pem").verifier
    Ledger(root)  # a restart: recovery runs here
    report = verify_chain(root, key)
    assert report.ok, report.findings
    assert report.packages == expect_packages
    assert not list((root / ".staging").iterdir())
    assert not (root / ".ledger" / "pending.json").exists()


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("collected", 2),  # media written, nothing sealed: discarded
        ("signed", 2),  # manifest signed in staging: discarded
        ("pending", 2),  # commit intent recorded, not renamed: discarded
        ("renamed", 3),  # in place, head not advanced: recovery advances the head
        ("head", 3),  # head advanced, intent not yet cleared
    ],
)
def test_kill_at_each_point_then_restart(tmp_path: Path, ring, point: str, committed: int) -> None:
    result = _run(tmp_path, point, kill_at=2)
    assert result.returncode == -signal.SIGKILL, result.stderr
    _check(tmp_path, committed)
    store_path = tmp_path / "var" / "cases.sqlite"
    # restart: finish what was pending, then carry on with the rest
    service = child.services(tmp_path, ring)
    resumed = service.resume()
    assert [c.state for c in resumed] == [State.EVIDENCE_COMPLETE]
    for violation in child.violations(N):
        service.handle(violation)
    _check(tmp_path, N)
    cases = service.store.list()
    assert len(cases) == N and {c.state for c in cases} == {State.EVIDENCE_COMPLETE}
    assert store_path.exists()
    for case in cases:
        assert json.loads((Path(case.package) / "manifest.json").read_bytes())["case_id"] == (
            case.case_id
        )


def test_kill_at_random_moments(tmp_path: Path, ring) -> None:
    rng = random.Random(5)
    n = 40  # more than four rounds can build before their kill
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.evidence.evidence_crash_child", str(tmp_path), "none",
             "0", str(n)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.2))
        proc.send_signal(signal.SIGKILL)
        if proc.wait(30) == -signal.SIGKILL:
            kills += 1
        root = tmp_path / "var" / "evidence"
        if root.exists():
            _check(tmp_path, len(package_dirs(root)))
    assert kills >= 3
    service = child.services(tmp_path, ring)
    service.resume()
    for violation in child.violations(n):
        service.handle(violation)
    _check(tmp_path, n)
    assert {c.state for c in service.store.list()} == {State.EVIDENCE_COMPLETE}
