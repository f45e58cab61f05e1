"""`streetwatch simulate` → real Mosquitto → `streetwatch run` (a real process) → cases with
signed evidence that verifies; SIGTERM mid-stream and a restart lose and double nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from ingest.config import load_config
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario import build_scenario
from streetwatch.simulate import PublishReport, publish_scenario, scenario_start
from tests.conftest import REPO

DURATION_S = 900.0
SPEED = 90.0
FAULTS = 7


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class CaseSystem:
    """A real HTTP case system on loopback that fails its first few requests with 503 and
    counts the cases it accepted by Idempotency-Key."""

    def __init__(self, fail_first: int = 3) -> None:
        self.accepted: Counter[str] = Counter()
        self.requests = 0
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                system.requests += 1
                if system.requests <= fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                assert self.headers["Content-Type"].startswith("multipart/form-data")
                assert b"manifest.json" in body and b"manifest.sig" in body
                system.accepted[self.headers["Idempotency-Key"]] += 1
                answer = json.dumps({"case_no": f"CS-{len(system.accepted)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cases"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_site(tmp_path: Path, case_system: str | None = None) -> Path:
    """The shipped devices.yaml with its storage under tmp_path (cameras stay off: sensors)."""
    doc = yaml.safe_load((REPO / "devices.yaml").read_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    if case_system is not None:
        doc["evidence"] = {
            "feed": {
                "http": {"url": case_system, "media": "upload"},
                "retry": {"min_delay_s": 0.2, "max_delay_s": 1.0},
            }
        }
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


class RunProcess:
    live: ClassVar[list[RunProcess]] = []
    """Started and not yet terminated: `stop_leftover_runs` kills them when a test fails."""

    def __init__(self, config: Path, broker: Mosquitto | None, log: Path, *extra: str) -> None:
        """`broker` None: the one devices.yaml names (e.g. `embedded`)."""
        RunProcess.live.append(self)
        self.log = log
        self._err = log.open("ab")
        command = ["run", "-c", str(config), "--no-cameras", *extra]
        if broker is not None:
            command += ["--broker", broker.url]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streetwatch", *command, "--status-every", "1"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_until(self._started, 60, "streetwatch run to start")

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"streetwatch run exited: {self.log.read_text()[-3000:]}")
        return "running:" in self.log.read_text()

    def terminate(self) -> dict:
        RunProcess.live.remove(self)
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        self._err.close()
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]
        return json.loads(out.decode().strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def stop_leftover_runs() -> Iterator[None]:
    yield
    while RunProcess.live:
        run = RunProcess.live.pop()
        run.proc.kill()
        run.proc.wait(10)
        run._err.close()


def scenario(config_path: Path) -> list:
    config = load_config(config_path)
    start = scenario_start(DURATION_S, SPEED)
    return build_scenario(config, duration_s=DURATION_S, seed=3, start=start, faults=True)


def publish(messages: list, broker: Mosquitto | str) -> PublishReport:
    url = broker if isinstance(broker, str) else broker.url
    return publish_scenario(messages, url=url, client_id="e2e-simulate", speed=SPEED)


def query(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def journaled(var: Path) -> int:
    return query(var / "journal.sqlite", "SELECT count(*) FROM readings")[0][0]


def all_analysed(var: Path, readings: int | None = None) -> bool:
    """The analysis cursor is at the newest reading, and (when given) that many are journaled:
    the publisher's acks come from the broker, so the consumer may still be committing."""
    journal = var / "journal.sqlite"
    if readings is not None and journaled(var) < readings:
        return False
    (top,) = query(journal, "SELECT coalesce(max(seq), 0) FROM readings")[0]
    rows = query(journal, "SELECT seq FROM cursors WHERE name = 'analysis'")
    return bool(rows) and rows[0][0] == top


def cases_of(var: Path) -> list[tuple[str, str, str]]:
    return query(var / "cases.sqlite", "SELECT case_id, rule_id, state FROM cases")


def verify(config: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streetwatch", "evidence", "verify", "-c", str(config), str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_simulated_street_becomes_verified_delivered_cases(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    case_system = CaseSystem()
    config = demo_site(tmp_path, case_system.url)
    var = tmp_path / "var"
    messages = scenario(config)
    recording = tmp_path / "run.jsonl"
    port = free_port()
    run = RunProcess(
        config,
        mosquitto,
        tmp_path / "run.log",
        "--record",
        str(recording),
        "--metrics-port",
        str(port),
    )
    report = publish(messages, mosquitto)
    assert report.acked == len(messages) and report.failed == 0
    wait_until(
        lambda: all_analysed(var, len(messages) - FAULTS), 60, "every reading to be analysed"
    )
    wait_until(
        lambda: all(state == "acknowledged" for _, _, state in cases_of(var)),
        60,
        "every case packaged and acknowledged by the case system",
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as health:
        assert health.status == 200 and json.loads(health.read())["broker"] == "connected"

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            return page.read().decode()

    # the publisher's acks come from the broker; the consumer may still be committing the last
    committed = f'streetwatch_ingest_messages_committed_total{{kind=""}} {len(messages)}.0'
    wait_until(lambda: committed in metrics(), 30, "every message committed, by /metrics")
    text = metrics()
    assert 'streetwatch_ingest_dead_letters_total{kind="not_json"} 1.0' in text
    assert 'streetwatch_pipeline_cases_opened_total{kind=""}' in text
    assert 'streetwatch_feed_feed_backlog{kind=""} 0.0' in text
    assert 'streetwatch_pipeline_queue_depth{kind="camera"} 0.0' in text
    summary = run.terminate()
    case_system.close()

    assert summary["ingest"]["messages_committed"] == len(messages)
    assert summary["ingest"]["dead_letters"] == FAULTS
    (journaled,) = query(var / "journal.sqlite", "SELECT count(*) FROM readings")[0]
    assert journaled == len(messages) - FAULTS
    assert summary["pipeline"]["readings_analysed"] == journaled

    cases = cases_of(var)
    rules = {rule for _, rule, _ in cases}
    assert {"fire-lane-occupied", "muck-truck-off-route"} <= rules, cases
    assert case_system.requests > len(cases)
    assert case_system.accepted == Counter({case_id: 1 for case_id, _, _ in cases})
    result = verify(config, var / "evidence")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(cases)} package(s)" in result.stdout

    catalog = str(REPO / "rules" / "catalog")
    command = ["rules", "replay", str(recording), "-c", str(config), "-r", catalog, "--json"]
    replay = subprocess.run(
        [sys.executable, "-m", "streetwatch", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    replayed = Counter(v["rule_id"] for v in json.loads(replay.stdout)["violations"])
    assert replayed == Counter(rule for _, rule, _ in cases)


def test_sigterm_mid_stream_then_restart_accounts_for_every_reading_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = demo_site(tmp_path)
    var = tmp_path / "var"
    messages = scenario(config)
    log = tmp_path / "run.log"
    run = RunProcess(config, mosquitto, log)
    reports: list[PublishReport] = []
    publisher = threading.Thread(target=lambda: reports.append(publish(messages, mosquitto)))
    publisher.start()
    time.sleep(3.0)
    first = run.terminate()
    assert 0 < first["ingest"]["messages_committed"] < len(messages)
    run = RunProcess(config, mosquitto, log)
    publisher.join(120)
    assert reports and reports[0].acked == len(messages)
    wait_until(
        lambda: all_analysed(var, len(messages) - FAULTS), 60, "the restart to analyse everything"
    )
    wait_until(
        lambda: all(state != "opened" for _, _, state in cases_of(var)), 60, "evidence packages"
    )
    second = run.terminate()

    journal = var / "journal.sqlite"
    (journaled,) = query(journal, "SELECT count(*) FROM readings")[0]
    assert journaled == len(messages) - FAULTS
    letters = query(journal, "SELECT DISTINCT topic, payload FROM dead_letters")
    assert len(letters) == FAULTS
    committed = first["ingest"]["messages_committed"] + second["ingest"]["messages_committed"]
    assert committed >= len(messages)
    analysed = first["pipeline"]["readings_analysed"] + second["pipeline"]["readings_analysed"]
    assert analysed >= journaled
    cases = cases_of(var)
    (distinct,) = query(var / "cases.sqlite", "SELECT count(DISTINCT violation_id) FROM cases")[0]
    assert distinct == len(cases) > 0
    assert "fire-lane-occupied" in {rule for _, rule, _ in cases}
    result = verify(config, var / "evidence")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("bad", ["rules"])
def test_run_refuses_a_broken_rules_folder_with_file_and_line(tmp_path: Path, bad: str) -> None:
    config = demo_site(tmp_path)
    rules = tmp_path / bad
    rules.mkdir()
    (rules / "broken.yaml").write_text(
        "rules:\n  - id: x\n    name: X\n    category: c\n    severity: minor\n"
        "    condition: {kind: presence, zone: nowhere-zone}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "streetwatch", "run", "-c", str(config), "-r", str(rules)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "broken.yaml:6" in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_embedded_broker_runs_the_site_with_no_server(tmp_path: Path) -> None:
    config = demo_site(tmp_path)
    port = free_port()
    doc = yaml.safe_load(config.read_text())
    doc["broker"] = {"url": "embedded", "embedded_port": port, "client_id": "sw-embedded"}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    var = tmp_path / "var"
    messages = scenario(config)
    run = RunProcess(config, None, tmp_path / "run.log")
    assert (
        f"embedded broker (Mosquitto, loopback only) at mqtt://127.0.0.1:{port}"
        in (tmp_path / "run.log").read_text()
    )
    report = publish(messages, f"mqtt://127.0.0.1:{port}")
    assert report.acked == len(messages)
    wait_until(
        lambda: all_analysed(var, len(messages) - FAULTS), 60, "every reading to be analysed"
    )
    wait_until(
        lambda: all(state != "opened" for _, _, state in cases_of(var)), 60, "evidence packages"
    )
    summary = run.terminate()
    assert summary["ingest"]["messages_committed"] == len(messages)
    assert "fire-lane-occupied" in {rule for _, rule, _ in cases_of(var)}
    assert (var / "broker" / "mosquitto.db").exists()
    result = verify(config, var / "evidence")
    assert result.returncode == 0, result.stdout + result.stderr


def test_embedded_broker_on_a_taken_port_stops_with_a_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = demo_site(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["broker"] = {"url": "embedded", "embedded_port": mosquitto.port}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "streetwatch", "run", "-c", str(config), "--no-cameras"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: embedded broker on 127.0.0.1:") and "embedded_port" in last
