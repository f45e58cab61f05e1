"""A sweeper case's package: the simulated round through the real journal, the detectors and the
catalog rule, then the builder draws the day's track and segments and carries the figures."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.sensors import SensorDetectors
from evidence.builder import EvidenceBuilder
from evidence.coverage_plot import coverage_evidence
from evidence.keys import Signer, Verifier
from evidence.verify import verify_package
from ingest.config import load_config
from ingest.decoders import decode
from ingest.journal import Journal
from ingest.registry import DeviceRegistry
from rules.engine import Engine
from rules.schema import load_rules
from streetwatch.scenario import build_scenario
from streetwatch.scenario_sweeper import with_deadlines_at
from tests.conftest import REPO

START = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
SWEEPER = "gps-sweeper-03"
ARTIFACTS = REPO / "var/test-artifacts/evidence"


@pytest.fixture(scope="module")
def sweeper_case(tmp_path_factory: pytest.TempPathFactory):
    """(site, journal, the one violation) of a 15-minute round with the deadline at 10 min."""
    tmp = tmp_path_factory.mktemp("sweeper")
    site = load_config(REPO / "devices.yaml")
    site = with_deadlines_at(site, START + timedelta(minutes=10))
    site = site.model_copy(update={"storage": site.storage.model_copy(update={"root": tmp})})
    rules = load_rules(REPO / "rules/catalog", site)
    site = site.model_copy(update={"devices": [site.device(SWEEPER)]})  # the round alone
    journal = Journal(tmp / "journal.sqlite")
    registry = DeviceRegistry(site)
    sensors, engine = SensorDetectors(site), Engine(rules, site)
    violations = []
    messages = build_scenario(site, duration_s=900, seed=5, start=START)
    topic = site.default_topic(
        SWEEPER, registry.route(f"streetwatch/demo-street/{SWEEPER}/gps").stream
    )
    for message in (m for m in messages if m.topic == topic):
        received = START + timedelta(seconds=message.at_s + 0.3)
        route = registry.route(message.topic)
        readings = decode(route.context(message.topic, received), message.payload)
        journal.write(readings)
        for reading in readings:
            for obs in sensors.process(reading):
                violations += engine.process(obs)
        for obs in sensors.tick(received):
            violations += engine.process(obs)
        violations += engine.advance(received)
    mine = [v for v in violations if v.rule_id == "sanitation-segment-uncovered"]
    return site, journal, mine, sensors


def test_the_round_opens_one_case_for_the_segment_left_out(sweeper_case) -> None:
    _, _, violations, sensors = sweeper_case
    [v] = violations
    assert (v.subject_id, v.devices) == ("tianping-e", (SWEEPER,))
    assert v.opened_at == START + timedelta(minutes=10)
    assert sensors.stats["coverage_passes"] == 2
    assert sensors.stats["coverage_segments_uncovered"] == 1
    assert sensors.stats["coverage_segments_covered"] == 2


def test_the_package_draws_the_day_and_carries_the_figures(sweeper_case, tmp_path: Path) -> None:
    site, journal, [v], _ = sweeper_case
    builder = EvidenceBuilder(site, Signer.load_or_create(tmp_path / "k.pem"), None, journal,
                              root=tmp_path / "evidence")  # fmt: skip
    package = builder.build(v)
    report, manifest = verify_package(package, Verifier.from_pem(tmp_path / "k.pem.pub"))
    assert report.ok, report.findings
    roles = {f["role"]: f["path"] for f in manifest["files"]}
    assert roles["coverage_plot"] == "media/coverage/coverage.png"
    png = (package / "media/coverage/coverage.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    figures = json.loads((package / "data/coverage.json").read_text())
    by_id = {s["id"]: (s["passes"], s["required"], s["covered"]) for s in figures["segments"]}
    assert by_id == {
        "wanping-w": (1, 1, True),
        "xietu-n": (1, 1, True),
        "tianping-e": (0, 1, False),
    }
    assert figures["segment_id"] == "tianping-e" and figures["covered"] == 2
    assert figures["day"] == "2026-12-04" and figures["timezone"] == "Asia/Shanghai"
    assert figures["track"]["points"] >= 600  # every fix of the day so far, not just the series
    assert figures["track"]["first"].startswith("2026-12-04T09:00")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package / "media/coverage/coverage.png", ARTIFACTS / "coverage.png")


def test_other_cases_get_no_coverage_plot(sweeper_case) -> None:
    site, journal, [v], _ = sweeper_case
    other = v.__class__(**{**{f: getattr(v, f) for f in v.__slots__}, "observations": ()})
    assert coverage_evidence(other, site, journal) is None
