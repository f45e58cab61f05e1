"""A JT/T 808 muck truck into `streetwatch run` (a real process) over real TCP: its dump body
raised off its approved route opens one case; and kill -9 of the box between receiving a
location and acknowledging it loses nothing and stores nothing twice."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import yaml

from ingest.config import load_config
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario import build_scenario
from streetwatch.scenario_jt808 import jt808_reports, play
from streetwatch.simulate import scenario_start
from tests.conftest import REPO, market_site_text
from tests.runkit import RunProcess, cases_of, metric, query, wait_until

DURATION_S = 240.0
SPEED = 40.0


def truck_site(tmp_path: Path, port: int) -> Path:
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    doc["jt808"] = {"host": "127.0.0.1", "port": port}
    shipped = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))
    doc["devices"] = [d for d in shipped["devices"] if d["id"] == "gps-muck-08"]
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def truck_reports(config_path: Path, duration_s: float = DURATION_S) -> list:
    site = load_config(config_path)
    start = scenario_start(duration_s, SPEED)
    messages = build_scenario(site, duration_s=duration_s, seed=4, start=start)
    mqtt, reports = jt808_reports(site, messages)
    assert not mqtt and reports
    return reports


def rules_dir(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copyfile(REPO / "rules/catalog/muck-truck-jt808.yaml", rules / "jt808.yaml")
    return rules


def test_dump_body_raised_off_route_is_one_case(mosquitto: Mosquitto, tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    config = truck_site(tmp_path, port)
    reports = truck_reports(config)
    dumping = [r for r in reports if r.location.items.get(0x2A) == b"\x00\x01"]
    assert 10 < len(dumping) < len(reports) / 2  # the truck leaves its route once, for a while
    run = RunProcess(
        config, mosquitto, tmp_path / "run.log", "-r", str(rules_dir(tmp_path)),
        "--http-port", str(http),
    )  # fmt: skip
    site = load_config(config)
    result = play(site, reports, host="127.0.0.1", port=port, speed=SPEED, stop=threading.Event())
    assert result.acked == len(reports), result.errors
    var = tmp_path / "var"
    wait_until(lambda: any(s != "opened" for *_, s in cases_of(var)), 60, "the case packaged")
    assert metric(http, "streetwatch_jt808_readings_total") == len(reports)
    assert metric(http, "streetwatch_jt808_acks_total") == len(reports)
    run.terminate()
    assert [rule for _, rule, _ in cases_of(var)] == ["muck-truck-dump-off-route"]


@pytest.mark.soak
def test_kill_9_between_receive_and_ack_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The box dies once before a commit and once after one (before its acks); the terminal
    resends what was not acknowledged; every report is journaled exactly once. (Soak: three
    starts of the whole box; tests/ingest/jt808/test_kill9.py kills the listener alone.)"""
    port = free_port()
    config = truck_site(tmp_path, port)
    reports = truck_reports(config, 120.0)
    site = load_config(config)
    stop = threading.Event()
    outcome: list = []
    sender = threading.Thread(
        target=lambda: outcome.append(
            play(site, reports, host="127.0.0.1", port=port, speed=1e6, stop=stop)
        )
    )
    log = tmp_path / "run.log"
    rules = ("-r", str(rules_dir(tmp_path)))
    for point in ("journal.before_commit=3", "journal.committed=5"):
        run = RunProcess(config, mosquitto, log, *rules, env={"STREETWATCH_FAILPOINTS": point})
        if not sender.is_alive() and not outcome:
            sender.start()
        assert run.wait_killed(60) == -9
    run = RunProcess(config, mosquitto, log, *rules)
    sender.join(60)
    stop.set()
    run.terminate()
    [result] = outcome
    assert result.acked == len(reports) and result.reconnects >= 2
    journal = tmp_path / "var" / "journal.sqlite"
    [(stored, distinct)] = query(journal, "SELECT count(*), count(DISTINCT key) FROM readings")
    assert stored == distinct == len(reports)
