"""`streetwatch evidence verify` and `streetwatch cases list|show`, run as the installed CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer, Verifier
from evidence.package import manifest_bytes
from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from tests.evidence.evidence_support import VideoRing, ensure_vtest, make_violation, site_config

REPO = Path(__file__).resolve().parents[2]
CLI = str(REPO / ".venv" / "bin" / "streetwatch")
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def sw(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


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


def _copy_chain(config: Path, tmp_path: Path) -> Path:
    root = tmp_path / "evidence"
    shutil.copytree(config.parent / "var" / "evidence", root, symlinks=True)
    return root


def _newest(root: Path) -> Path:
    return max(root.glob("*/*/manifest.json"), key=lambda p: json.loads(p.read_bytes())["seq"])


def test_verify_without_config_warns_that_the_key_is_not_pinned(site, tmp_path: Path) -> None:
    config, _ = site
    root = _copy_chain(config, tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()  # no devices.yaml here
    result = sw("evidence", "verify", str(root), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    key_id = Verifier.from_pem(config.parent / "var/keys/box_ed25519.pem.pub").key_id
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert "not pinned" in warning and key_id in warning
    assert "--public-key" in warning and "devices.yaml" in warning
    assert "config: none (devices.yaml not found" in result.stdout
    as_json = json.loads(sw("evidence", "verify", str(root), "--json", cwd=elsewhere).stdout)
    assert as_json["pinned"] is False and as_json["config"] is None
    assert as_json["signing_keys"] == [key_id] and as_json["head"]["seq"] == 2
    # pinned by -c: says which config, no warning
    pinned = sw("evidence", "verify", str(root), "-c", str(config), cwd=elsewhere)
    assert pinned.returncode == 0 and "warning" not in pinned.stderr
    assert f"config: {config}" in pinned.stdout
    # a config named with -c must exist
    missing = sw("evidence", "verify", str(root), "-c", "nope.yaml", cwd=elsewhere)
    assert missing.returncode == 1 and "nope.yaml: no such file" in missing.stderr


def test_tail_resigned_by_another_key_fails_without_config(site, tmp_path: Path) -> None:
    """An attacker re-signs the newest package with their own key (and names it in the
    manifest, and fixes the ledger head): with no devices.yaml to pin the key, verify still
    fails, naming the package and both keys."""
    config, _ = site
    root = _copy_chain(config, tmp_path)
    newest = _newest(root)
    manifest = json.loads(newest.read_bytes())
    box_key = manifest["signer"]["key_id"]
    attacker = Signer(Ed25519PrivateKey.generate())
    manifest["party"]["name"] = "Somebody Else"
    manifest["signer"] = {
        "algorithm": "Ed25519",
        "key_id": attacker.key_id,
        "public_key": attacker.verifier.public_b64,
    }
    data = manifest_bytes(manifest)
    newest.write_bytes(data)
    newest.with_name("manifest.sig").write_bytes(attacker.sign(data))
    head = json.loads((root / ".ledger/head.json").read_text())
    head["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    (root / ".ledger/head.json").write_text(json.dumps(head))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    result = sw("evidence", "verify", str(root), cwd=elsewhere)
    assert result.returncode == 1, result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("key_change:"))
    assert newest.parent.name in line and box_key in line and attacker.key_id in line
    assert "not pinned" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")
    assert "1 finding(s): key_change" in result.stderr


def test_expect_head_catches_a_truncated_tail(site, tmp_path: Path) -> None:
    """The newest package and `.ledger/` deleted, a head that fits the shorter chain written
    back: the chain proves nothing about its tail; the case system's record does."""
    config, _ = site
    root = _copy_chain(config, tmp_path)
    head = json.loads((root / ".ledger/head.json").read_text())
    acknowledged = f"{head['seq']}:{head['manifest_sha256']}"
    ok = sw("evidence", "verify", str(root), "-c", str(config), "--expect-head", acknowledged)
    assert ok.returncode == 0, ok.stderr
    newest = _newest(root)
    shutil.rmtree(newest.parent)
    shutil.rmtree(root / ".ledger")
    gone = sw("evidence", "verify", str(root), "-c", str(config))
    assert gone.returncode == 1 and "missing_head" in gone.stderr
    previous = _newest(root)
    (root / ".ledger").mkdir()
    (root / ".ledger/head.json").write_text(
        json.dumps({"seq": 1, "manifest_sha256": hashlib.sha256(previous.read_bytes()).hexdigest()})
    )
    assert sw("evidence", "verify", str(root), "-c", str(config)).returncode == 0
    caught = sw("evidence", "verify", str(root), "-c", str(config), "--expect-head", acknowledged)
    assert caught.returncode == 1
    assert "tail_missing:" in caught.stdout and "ends at seq 1" in caught.stdout
    assert "1 finding(s): tail_missing" in caught.stderr
    bad = sw("evidence", "verify", str(root), "--expect-head", "2:abc")
    assert bad.returncode == 2 and "64 hex digits" in bad.stderr
