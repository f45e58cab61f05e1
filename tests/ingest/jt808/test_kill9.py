"""kill -9 of the listener between receiving locations and acknowledging them (the journal's
failpoints, in a real process over real TCP): the terminal resends what was not acknowledged,
and every report is journaled exactly once. (tests/streetwatch/test_run_jt808.py does the same
to a whole `streetwatch run`.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingest.config import load_config
from ingest.journal import Journal
from streetwatch.scenario_jt808 import Report, location, play
from tests.ingest.jt808.kit import minutes_ago, site, wait_until

REPO = Path(__file__).resolve().parents[3]


def listener(config: Path, port_file: Path, failpoint: str | None) -> subprocess.Popen:
    port_file.unlink(missing_ok=True)
    env = {**os.environ, "STREETWATCH_FAILPOINTS": failpoint or ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.jt808", str(config), "--port-file", str(port_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_file.exists() or proc.poll() is not None, 30, "the listener")
    assert proc.poll() is None
    return proc


@pytest.mark.parametrize("point", ["journal.before_commit=4", "journal.committed=4"])
def test_kill_9_before_the_ack_loses_nothing_and_stores_once(tmp_path: Path, point: str) -> None:
    path = site(tmp_path, port=0)
    config = load_config(path)
    port_file = tmp_path / "port"
    proc = listener(path, port_file, point)
    port = int(port_file.read_text())
    reports = [
        Report(0.0, "muck-08", location(31.2 + i * 1e-4, 121.44, minutes_ago(30 - i / 10)))
        for i in range(40)
    ]
    stop = threading.Event()
    outcome: list = []
    sender = threading.Thread(
        target=lambda: outcome.append(
            play(config, reports, host="127.0.0.1", port=port, speed=1.0, stop=stop)
        )
    )
    sender.start()
    assert proc.wait(60) == -signal.SIGKILL
    # the box comes back on the same port; the terminal reconnects and resends
    path.write_text(path.read_text().replace("port: 0", f"port: {port}"))
    proc = listener(path, port_file, None)
    try:
        sender.join(60)
        stop.set()
        [result] = outcome
        assert result.acked == len(reports) and result.reconnects >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    journal = Journal(config.storage.journal)  # type: ignore[arg-type]
    assert journal.count() == len(reports)
    assert len({r.key for _, r in journal.readings()}) == len(reports)
    journal.close()
