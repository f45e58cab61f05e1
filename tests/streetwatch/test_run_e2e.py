"""`streetwatch simulate` → real Mosquitto → `streetwatch run` (a real process) → cases with
signed evidence that verifies; SIGTERM mid-stream and a restart lose and double nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from evidence.package import AFTER_SUFFIX
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.simulate import PublishReport
from tests.conftest import REPO
from tests.runkit import (
    FAULTS,
    SITE_RULES,
    CaseSystem,
    RunProcess,
    all_analysed,
    cases_of,
    demo_site,
    journaled,
    publish,
    query,
    scenario,
    verify,
    wait_until,
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
        "--http-port",
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
    cleared = query(var / "cases.sqlite", "SELECT count(*) FROM cases WHERE cleared_at IS NOT NULL")
    follow_ups = len(list((var / "evidence").glob(f"*/*{AFTER_SUFFIX}/manifest.json")))
    assert follow_ups <= cleared[0][0]  # the box saw cars leave: each an "after" package
    assert f"{len(cases) + follow_ups} package(s)" in result.stdout

    rules = str(config.parent / SITE_RULES)  # the catalog the run used (demo_site's)
    command = ["rules", "replay", str(recording), "-c", str(config), "-r", rules, "--json"]
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
    # mid-stream: the first readings are in (not a guess of how long that takes on a busy box)
    wait_until(lambda: journaled(var) > 0, 60, "the first readings journaled")
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
    (stored,) = query(journal, "SELECT count(*) FROM readings")[0]
    assert stored == len(messages) - FAULTS
    letters = query(journal, "SELECT DISTINCT topic, payload FROM dead_letters")
    assert len(letters) == FAULTS
    committed = first["ingest"]["messages_committed"] + second["ingest"]["messages_committed"]
    assert committed >= len(messages)
    analysed = first["pipeline"]["readings_analysed"] + second["pipeline"]["readings_analysed"]
    assert analysed >= stored
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
    # no case feed configured: the status line says so instead of "delivered 0"
    status = [line for line in run.log_text().splitlines() if line.startswith("messages/s")]
    assert status and all("feed off" in line and "delivered" not in line for line in status)
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
