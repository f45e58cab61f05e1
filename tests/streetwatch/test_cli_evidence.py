"""`streetwatch evidence verify` and `streetwatch cases list|show`, run as the installed CLI."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer
from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from tests.evidence.evidence_support import VideoRing, ensure_vtest, make_violation, site_config

REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "streetwatch")
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def sw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    base = tmp_path_factory.mktemp("cli-evidence")
    config = site_config(base)
    paths = evidence_paths(config)
    ring = VideoRing.from_file(ensure_vtest(), "cam-1", START, 12.0)
    store = CaseStore(paths.cases)
    service = EvidenceService(
        EvidenceBuilder(config, Signer.load_or_create(paths.key), ring, None), store
    )
    ids = [
        service.handle(make_violation(START, i, dwell_s=2.0, pre_s=0.5, post_s=0.5)).case_id
        for i in range(2)
    ]
    store.transition(ids[0], State.SUBMITTED, data={"targets": ["http"]})
    store.close()
    return base / "devices.yaml", ids


def test_verify_chain_and_package_ok(site) -> None:
    config, ids = site
    root = config.parent / "var" / "evidence"
    result = sw("evidence", "verify", str(root), "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "ok — 2 package(s)" in result.stdout and "box_ed25519.pem.pub" in result.stdout
    package = next(root.glob(f"*/{ids[1]}"))
    result = sw("evidence", "verify", str(package), "-c", str(config), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["ok"] is True


def test_verify_reports_tampering_and_fails(site, tmp_path: Path) -> None:
    config, ids = site
    root = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(config.parent / "var" / "evidence"), str(root)], check=True)
    snap = next(root.glob(f"*/{ids[0]}/media/cam-1/latest.annotated.jpg"))
    snap.write_bytes(snap.read_bytes()[:-1] + b"\0")
    pub = config.parent / "var" / "keys" / "box_ed25519.pem.pub"
    result = sw("evidence", "verify", str(root), "--public-key", str(pub))
    assert result.returncode == 1
    assert "changed_file:" in result.stdout and "latest.annotated.jpg" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")
    assert "1 finding(s): changed_file" in result.stderr
    as_json = sw("evidence", "verify", str(root), "--public-key", str(pub), "--json")
    data = json.loads(as_json.stdout)
    assert [f["kind"] for f in data["findings"]] == ["changed_file"]


def test_cases_list_and_show(site) -> None:
    config, ids = site
    listed = json.loads(sw("cases", "list", "-c", str(config), "--json").stdout)
    assert sorted(c["case_id"] for c in listed) == sorted(ids)
    states = {c["case_id"]: c["state"] for c in listed}
    assert states == {ids[0]: "submitted", ids[1]: "evidence_complete"}
    text = sw("cases", "list", "-c", str(config), "--state", "submitted")
    assert text.returncode == 0 and ids[0] in text.stdout and ids[1] not in text.stdout
    shown = json.loads(sw("cases", "show", ids[0], "-c", str(config), "--json").stdout)
    assert [e["event"] for e in shown["events"]] == ["opened", "evidence_complete", "submitted"]
    plain = sw("cases", "show", ids[0], "-c", str(config))
    assert "evidence_complete" in plain.stdout and "deadline" in plain.stdout
    missing = sw("cases", "show", "nope", "-c", str(config))
    assert missing.returncode == 1 and "no case 'nope'" in missing.stderr
    bad_state = sw("cases", "list", "-c", str(config), "--state", "lost")
    assert bad_state.returncode == 1 and "lost" in bad_state.stderr
