"""Path traversal and MQTT wildcards where none belong: ids that become file names or topic
levels (site, devices, zones, merchants, client id, shared group, sink origin, rules, cases),
the WHIP endpoint's `/whip/<camera>`, evidence manifests, and publish topics are refused with a
clear error before anything is opened, published or subscribed.

(tests/ingest/test_config_fuzz.py checks that fuzzed ids which load are safe and
tests/ingest/test_config.py the syntax of device topic filters; this suite sends each hostile
value to each place and checks the refusal names the file, line and what is allowed.)"""

from __future__ import annotations

import copy
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from evidence.cases import CaseStore
from evidence.verify import verify_package
from ingest.config import load_config
from ingest.video.webrtc import WhipServer
from ingest.yamlsource import ConfigError
from rules.schema import load_rules
from streetwatch.cli import cli
from tests.conftest import REPO
from tests.faults.conftest import Reliability

DEMO: dict[str, Any] = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))
CONFIG = load_config(REPO / "devices.yaml")

HOSTILE_IDS = [
    "../evil",
    "..",
    ".",
    "a/b",
    "cam-1/../../etc",
    "..\\windows",
    "%2e%2e%2fetc",
    "/abs",
    "+",
    "#",
    "cam+1",
    "cam#1",
    "$SYS",
    "",
    " cam",
    "cam\n1",
    "cam\x00",
    "-leading-dash",
    "x" * 65,
]

ID_PLACES: dict[str, tuple[Any, ...]] = {
    "site id": ("site", "id"),
    "device id": ("devices", 1, "id"),
    "camera id": ("devices", 0, "id"),
    "zone id": ("devices", 0, "zones", 0, "id"),
    "merchant id": ("merchants", 0, "id"),
    "zone's merchant": ("devices", 0, "zones", 0, "merchant"),
    "broker client id": ("broker", "client_id"),
    "broker shared group": ("broker", "shared_group"),
    "sink origin": ("timeseries", "origin"),
}


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[path[-1]] = value


def refusal(path: Path) -> list[str]:
    """The problems `load_config` reports for the file ([] if it loads)."""
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


class Ledger:
    def __init__(self) -> None:
        self.tried = 0
        self.wrong: list[object] = []


@pytest.fixture
def ledger(request: pytest.FixtureRequest, reliability: Reliability) -> Iterator[Ledger]:
    """One ledger row per test from what it tried and what was not refused clearly."""
    found = Ledger()
    yield found
    first = request.node.function.__doc__.strip().splitlines()[0].rstrip(".")
    what = first if first[:2].isupper() else first[0].lower() + first[1:]  # MQTT stays
    reliability.record("bad input", what, tried=found.tried, lost=len(found.wrong))


def test_hostile_ids_are_refused_at_their_line(tmp_path: Path, ledger: Ledger) -> None:
    """Path traversal or wildcard in an id of devices.yaml."""
    for place, where in ID_PLACES.items():
        for value in HOSTILE_IDS:
            doc = copy.deepcopy(DEMO)
            _set(doc, where, value)
            path = tmp_path / f"ids-{ledger.tried}.yaml"
            path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
            ledger.tried += 1
            problems = refusal(path)
            line = re.compile(rf"^{re.escape(str(path))}:\d+: ")
            clear = [p for p in problems if line.match(p) and "ids are 1-64 letters" in p]
            if not clear:
                ledger.wrong.append((place, value, problems or "loaded"))
    assert not ledger.wrong, ledger.wrong[:5]


def test_hostile_rule_ids_and_names_are_refused(tmp_path: Path, ledger: Ledger) -> None:
    """Path traversal or wildcard in a rule id or a zone/device name of a rule."""
    template = {
        "id": "ok-rule",
        "name": "A rule",
        "category": "test",
        "condition": {"kind": "occupancy", "zone": "fire-lane-1", "dwell": "30s"},
    }
    for key in ("id", "zone", "device"):
        for value in HOSTILE_IDS:
            rule = copy.deepcopy(template)
            if key == "id":
                rule["id"] = value
            else:
                rule["condition"][key] = value
            folder = tmp_path / f"rules-{ledger.tried}"
            folder.mkdir()
            path = folder / "rule.yaml"
            path.write_text(yaml.safe_dump(rule, allow_unicode=True, sort_keys=False), "utf-8")
            ledger.tried += 1
            try:
                load_rules(folder, CONFIG)
            except ConfigError as exc:
                text = "\n".join(exc.problems)
                expected = "ids are 1-64 letters" if key == "id" else f"unknown {key}"
                if re.search(rf"{re.escape(str(path))}:\d+: ", text) and expected in text:
                    continue
                ledger.wrong.append((key, value, exc.problems))
                continue
            ledger.wrong.append((key, value, "loaded"))
    assert not ledger.wrong, ledger.wrong[:5]


@pytest.mark.usefixtures("keep_root_logging")
def test_cases_show_refuses_a_path_for_a_case_id(tmp_path: Path, ledger: Ledger) -> None:
    """Path traversal in a case id (streetwatch cases show)."""
    config = tmp_path / "devices.yaml"
    doc = copy.deepcopy(DEMO)
    doc["storage"] = {"root": str(tmp_path / "var")}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    (tmp_path / "var").mkdir()
    CaseStore(tmp_path / "var" / "cases.sqlite").close()
    runner = CliRunner()
    for value in ["../../etc/passwd", "..", "20260101-abc/../../x", "/etc/passwd", "a b", "#"]:
        ledger.tried += 1
        result = runner.invoke(cli, ["cases", "show", value, "-c", str(config)])
        if result.exit_code != 2 or "is not a case id" not in result.output:
            ledger.wrong.append((value, result.exit_code, result.output))
    ledger.tried += 1
    plain = runner.invoke(cli, ["cases", "show", "20260101-0123abcd", "-c", str(config)])
    if plain.exit_code != 1 or "no case '20260101-0123abcd'" not in plain.output:
        ledger.wrong.append(("well-formed id", plain.exit_code, plain.output))
    assert not ledger.wrong, ledger.wrong


def _request(url: str, method: str, token: str | None) -> int:
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = b"v=0\r\n" if method == "POST" else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_whip_endpoint_refuses_traversal_in_the_camera_id(ledger: Ledger) -> None:
    """Path traversal in the WHIP endpoint's camera id."""
    token = "whip-token-0123456789"
    frames: list[object] = []
    server = WhipServer(token, ["drone-01"], frames.append)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    probes = [
        "/whip/..",
        "/whip/%2e%2e",
        "/whip/..%2F..%2Fetc%2Fpasswd",
        "/whip/drone-01%2F..",
        "/whip/../whip/drone-01",
        "/whip/drone-01/../../etc/passwd",
        "/whip/%2E%2E%5Cwindows",
        "/whip/drone-01%00",
        "/whip/+",
        "/whip/%23",
    ]
    try:
        for probe in probes:
            for token_sent in (token, None):
                ledger.tried += 1
                status = _request(base + probe, "POST", token_sent)
                if status not in (401, 404, 405):
                    ledger.wrong.append((probe, token_sent is not None, status))
            ledger.tried += 1
            status = _request(base + probe + "/session", "DELETE", token)
            if status not in (401, 404, 405):
                ledger.wrong.append((probe, "DELETE", status))
        stats = dict(server.stats)
    finally:
        server.stop()
    assert not ledger.wrong, ledger.wrong
    assert stats.get("sessions", 0) == 0 and not frames
    assert stats["unauthorised"] >= len(probes) // 2, stats
    assert stats.get("unknown_device", 0) > 0, stats


def test_evidence_manifest_pointing_outside_its_package_is_refused(
    tmp_path: Path, ledger: Ledger
) -> None:
    """Path traversal in an evidence manifest's file list."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not evidence")
    package = tmp_path / "evidence" / "2026-01-01" / "20260101-0123abcd"
    package.mkdir(parents=True)
    for rel in ["../../../secret.txt", "media/../../../../secret.txt", str(secret)]:
        ledger.tried += 1
        manifest = {"case_id": package.name, "files": [{"path": rel, "sha256": "0", "size": 1}]}
        (package / "manifest.json").write_text(json.dumps(manifest))
        report, _ = verify_package(package)
        outside = [f for f in report.findings if f.kind == "bad_manifest" and "outside" in f.detail]
        if report.ok or not outside:
            ledger.wrong.append((rel, report.findings))
    assert not ledger.wrong, ledger.wrong


def _feed(topic: str) -> dict[str, Any]:
    return {"feed": {"mqtt": {"topic": topic}}}


def test_wildcards_in_publish_topics_are_refused_at_load(tmp_path: Path, ledger: Ledger) -> None:
    """MQTT wildcard in a topic that is published to or overlaps one."""
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("case feed +", {"evidence": _feed("streetwatch/{site}/+/cases")}, "wildcard", "topic"),
        ("case feed #", {"evidence": _feed("streetwatch/{site}/#")}, "wildcard", "topic"),
        ("case feed # mid", {"evidence": _feed("a/#/b")}, "wildcard", "topic"),
        ("case feed a+b", {"evidence": _feed("cases+{site}")}, "wildcard", "topic"),
        ("case feed $", {"evidence": _feed("$SYS/{site}")}, "reserved", "topic"),
        ("case feed empty", {"evidence": _feed("")}, "1-1024 bytes", "topic"),
        ("case feed NUL", {"evidence": _feed("cases\x00x")}, "1-1024 bytes", "topic"),
        (
            "case feed in device namespace",
            {"evidence": _feed("streetwatch/{site}/cases/all")},
            "own cases",
            "topic",
        ),
    ]
    catch_all = {"id": "catch-all", "kind": "gps", "topic": "#"}
    cases.append(
        (
            "device topic taking the case feed",
            {"evidence": _feed("streetwatch/{site}/cases"), "devices": [catch_all]},
            "own cases",
            "topic",
        )
    )
    for name, change, why, field in cases:
        doc = copy.deepcopy(DEMO)
        for key, value in change.items():
            if key == "devices":
                doc["devices"] += value
            else:
                doc[key] = value
        path = tmp_path / f"topics-{ledger.tried}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
        ledger.tried += 1
        problems = refusal(path)
        line = re.compile(rf"^{re.escape(str(path))}:\d+: \S*{field}: ")
        if not any(line.match(p) and why in p for p in problems):
            ledger.wrong.append((name, problems or "loaded"))
    ledger.tried += 1
    good = copy.deepcopy(DEMO)
    good["evidence"] = _feed("streetwatch/{site}/cases")
    path = tmp_path / "good-topic.yaml"
    path.write_text(yaml.safe_dump(good, allow_unicode=True, sort_keys=False), "utf-8")
    if refusal(path):
        ledger.wrong.append(("the default case topic", refusal(path)))
    assert not ledger.wrong, ledger.wrong
