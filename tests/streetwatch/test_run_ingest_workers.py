"""`streetwatch run --ingest-workers 2` on a real Mosquitto: two ingest processes, each on a
share of the devices with a journal of its own, read into the main journal. Every reading
reaches the analysis exactly once, also when one worker is killed with SIGKILL mid-stream (it
is started again and its session redelivers what it had not acknowledged)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from pathlib import Path

from streetwatch.ingest_workers import WORKER_DIR
from streetwatch.localbroker import Mosquitto
from tests.runkit import (
    FAULTS,
    RunProcess,
    all_analysed,
    demo_site,
    journaled,
    publish,
    scenario,
    wait_until,
)


def keys(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [key for (key,) in db.execute("SELECT key FROM readings")]
    finally:
        db.close()


def test_two_ingest_workers_every_reading_once_through_a_kill9(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = demo_site(tmp_path)
    var = tmp_path / "var"
    workers = var / WORKER_DIR
    messages = scenario(site)
    run = RunProcess(site, mosquitto, tmp_path / "run.log", "--ingest-workers", "2")
    reports = []
    publisher = threading.Thread(target=lambda: reports.append(publish(messages, mosquitto)))
    publisher.start()

    def worker0_journaled() -> bool:
        path = workers / "journal-0.sqlite"
        return path.exists() and len(keys(path)) >= 20

    wait_until(worker0_journaled, 60, "worker 0 to journal some readings")
    assert publisher.is_alive(), "killed while the stream still flows"
    pid = json.loads((workers / "status-0.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    publisher.join(120)
    assert reports and reports[0].acked == len(messages)

    expected = len(messages) - FAULTS
    wait_until(lambda: journaled(var) >= expected, 60, "every reading in the main journal")
    wait_until(lambda: all_analysed(var, expected), 60, "the analysis to read them all")
    summary = run.terminate()

    main = keys(var / "journal.sqlite")
    assert len(main) == len(set(main)) == expected
    per_worker = [set(keys(workers / f"journal-{i}.sqlite")) for i in range(2)]
    assert all(per_worker), "each worker owns some devices"
    assert not per_worker[0] & per_worker[1]
    assert per_worker[0] | per_worker[1] == set(main)
    assert summary["ingest"]["worker_restarts"] == 1
    assert summary["ingest"]["ingest_workers"] == 2
    assert "ingest worker 0 exited" in run.log_text()
