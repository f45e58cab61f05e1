"""Disk nearly full: the storage root lives on a small tmpfs that a ballast file fills while
`streetwatch run` ingests the street and packages evidence. While the disk is full the process
keeps running, says what is wrong (no space left on the storage disk) and counts it; once the
ballast goes, every reading is journaled once, every case packaged and delivered once, and every
package verifies."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer
from evidence.ledger import LEDGER, STAGING, Ledger
from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from evidence.verify import verify_chain
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.simulate import PublishReport
from tests.evidence.evidence_support import make_violation, site_config, utc
from tests.faults.conftest import Reliability
from tests.runkit import (
    FAULTS,
    CaseSystem,
    RunProcess,
    account,
    all_analysed,
    delivered,
    demo_site,
    journaled,
    publish,
    scenario,
    wait_until,
)

DISK_MB = 48
SPEED = 30.0
"""Slower than the other end-to-end tests: the street keeps publishing through every fill."""


@contextlib.contextmanager
def tmpfs(where: Path, size_mb: int) -> Iterator[Path]:
    """A private tmpfs of `size_mb` at `where`; skips the test when mounting is not permitted."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, ballast: Path, leave: int = 0) -> int:
    """Write `ballast` until the disk is full, then give back `leave` bytes; its size."""
    written = 0
    with ballast.open("wb") as out:
        for chunk in (1 << 20, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(out.fileno(), block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        out.truncate(max(0, written - leave))
    return written - leave


def free_bytes(disk: Path) -> int:
    stat = os.statvfs(disk)
    return stat.f_bavail * stat.f_frsize


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        return page.read().decode()


def metric_sum(text: str, name: str) -> float:
    """Sum over every label of one metric family (0 when absent)."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
        total += float(match.group(1))
    return total


def health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as page:
            return page.status, page.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def integrity(db: Path) -> str:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def fill_and_free(
    mosquitto: Mosquitto,
    tmp_path: Path,
    reliability: Reliability,
    leaves: list[int],
    floor_mb: int,
    duration_s: float = 600.0,
    seed: int = 4,
) -> None:
    """Fill the storage disk `len(leaves)` times while the street publishes, each time leaving
    `leave` bytes free, for 4 s; `floor_mb` is storage.min_free_mb (0: no guard, every stage
    runs into ENOSPC itself)."""
    with tmpfs(tmp_path / "disk", DISK_MB) as root:
        case_system = CaseSystem(fail_first=0)
        var = root / "var"
        config = demo_site(
            tmp_path, case_system.url, storage={"root": str(var), "min_free_mb": floor_mb}
        )
        messages = scenario(config, duration_s=duration_s, seed=seed)
        port = free_port()
        run = RunProcess(config, mosquitto, tmp_path / "run.log", "--http-port", str(port))
        reports: list[PublishReport] = []
        publisher = threading.Thread(
            target=lambda: reports.append(publish(messages, mosquitto, speed=SPEED)), daemon=True
        )
        publisher.start()
        ballast = root / "ballast"
        unhealthy = 0
        for leave in leaves:
            before = journaled(var)
            wait_until(lambda b=before: journaled(var) > b, 60, "readings before the fill")
            fill(root, ballast, leave)
            wait_until(
                lambda: metric_sum(metrics(port), "streetwatch_storage_disk_full") == 1.0,
                30,
                "/metrics to report the full disk",
            )
            time.sleep(3.0)
            assert run.proc.poll() is None, run.log_text()[-3000:]
            status, body = health(port)
            unhealthy += status == 503 and json.loads(body)["storage"]["full"] is True
            ballast.unlink()
        publisher.join(300)
        assert reports and reports[0].acked == len(messages)
        wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 120, "every reading")
        wait_until(lambda: delivered(var), 120, "every case delivered")
        wait_until(lambda: health(port)[0] == 200, 30, "/healthz to be ok again")
        text = metrics(port)
        summary = run.terminate()
        case_system.close()
        refused = metric_sum(text, "streetwatch_storage_disk_full_refused_total")
        enospc = metric_sum(text, "streetwatch_storage_disk_full_enospc_total")
        books = account(config, var, len(messages) - FAULTS, case_system=case_system)
        half = leftovers(var / "evidence")
        broken = [
            f"{db.name}: {result}"
            for db in (var / "journal.sqlite", var / "cases.sqlite", var / "case_outbox.sqlite")
            if db.exists() and (result := integrity(db)) != "ok"
        ]
        lost = books.lost + books.cases_doubled + len(half) + len(broken)
        reliability.record(
            "fault",
            "disk nearly full" + (f" (min_free_mb {floor_mb})" if floor_mb else " (no floor)"),
            tried=len(leaves),
            lost=lost,
            refused=refused,
            enospc=enospc,
            **books.as_dict(),
        )
        log = run.log_text()
        assert unhealthy == len(leaves), "/healthz did not report the full disk"
        assert "storage disk is full" in log or "storage disk nearly full" in log
        assert "Traceback" not in log, log[-3000:]
        if floor_mb:
            assert refused > 0 and "below storage.min_free_mb" in log
        else:
            assert enospc > 0 and summary["ingest"]["journal_errors"] > 0
        assert books.readings_lost == 0 and books.dead_letters_kept == FAULTS, books
        assert books.cases_doubled == 0 and books.cases_undelivered == 0, books
        assert books.verify_ok, books.verify_output
        assert books.packages_verified == books.cases > 0, books
        assert not half and not broken, (half, broken)


def test_disk_full_without_a_floor_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    fill_and_free(mosquitto, tmp_path, reliability, [0, 16 << 10], floor_mb=0)


def test_disk_below_min_free_mb_loses_nothing(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    fill_and_free(mosquitto, tmp_path, reliability, [1 << 20], floor_mb=4, duration_s=300.0)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_disk_full_again_and_again(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    leaves = [0, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 0, 8 << 10, 32 << 10]
    fill_and_free(mosquitto, tmp_path, reliability, leaves, floor_mb=0, duration_s=1800.0)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_disk_below_min_free_mb_again_and_again(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    leaves = [0, 1 << 20, 3 << 20, 0, 2 << 20, 512 << 10]
    fill_and_free(mosquitto, tmp_path, reliability, leaves, floor_mb=4, duration_s=1500.0)


def leftovers(root: Path) -> list[str]:
    """Half-written things a failed package commit must not leave: staging folders, temp files,
    a pending record."""
    found = [f"{STAGING}/{p.name}" for p in (root / STAGING).iterdir()]
    found += [str(p.relative_to(root)) for p in root.rglob("*.tmp")]
    if (root / LEDGER / "pending.json").exists():
        found.append(f"{LEDGER}/pending.json")
    return found


def package_on_a_full_disk(tmp_path: Path, reliability: Reliability, leaves: list[int]) -> None:
    """Each case is first packaged with only `leave` bytes free (so ENOSPC strikes a different
    step of the commit each time: staging files, manifest, signature, pending record, rename,
    head, the case store), then again once the ballast is gone."""
    with tmpfs(tmp_path / "disk", 8) as root:
        config = site_config(root)
        paths = evidence_paths(config)
        steps: Counter[str] = Counter()
        reached: list[str] = []
        builder = EvidenceBuilder(
            config,
            Signer.load_or_create(paths.key),
            None,
            None,
            root=paths.root,
            crash_hook=reached.append,
        )
        service = EvidenceService(builder, CaseStore(paths.cases))
        ballast = root / "ballast"
        problems: list[str] = []
        for n, leave in enumerate(leaves):
            violation = make_violation(utc(2024, 5, 1, 9, 0, n % 60), n)
            service.store.open(violation, case_id=builder.case_id(violation))  # as analysis does
            fill(root, ballast, leave)
            reached.clear()
            try:
                service.handle(violation)
            except Exception as exc:
                assert is_full(exc), exc
                steps[reached[-1] if reached else "before collected"] += 1
            else:
                steps["not stopped"] += 1
            ballast.unlink()
            case = service.handle(violation)
            if case.state is not State.EVIDENCE_COMPLETE:
                problems.append(f"{case.case_id}: {case.state}")
            problems += leftovers(paths.root)
        report = verify_chain(paths.root, builder.signer.verifier)
        packages = len(list(paths.root.glob("*/*/manifest.json")))
        head = Ledger.read_head(paths.root)
        lost = len(problems) + (0 if report.ok else 1) + abs(len(leaves) - packages)
        reliability.record(
            "fault",
            "disk full while packaging evidence (every commit step)",
            tried=len(leaves),
            lost=lost,
            stopped_at=dict(steps),
            packages=packages,
        )
        assert not problems, problems
        assert report.ok, report
        assert packages == len(leaves) and head is not None and head.seq == len(leaves)
        assert len(steps) >= 4, steps


def is_full(exc: BaseException) -> bool:
    from ingest.diskspace import is_disk_full

    return is_disk_full(exc)


def test_full_disk_interrupts_every_step_of_a_package_commit(
    tmp_path: Path, reliability: Reliability
) -> None:
    package_on_a_full_disk(tmp_path, reliability, [i * 1024 for i in range(0, 40, 2)])


@pytest.mark.soak
def test_soak_full_disk_interrupts_package_commits(
    tmp_path: Path, reliability: Reliability
) -> None:
    package_on_a_full_disk(tmp_path, reliability, [i * 512 for i in range(0, 160)])
