"""Tampering: verify names exactly what was done, and nothing else."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.builder import EvidenceBuilder
from evidence.keys import Signer, Verifier
from evidence.ledger import Ledger
from evidence.package import manifest_bytes, package_dirs
from evidence.verify import is_evidence_root, parse_expected_head, verify_chain, verify_package
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, ring) -> tuple[Path, Verifier]:
    """Three sealed packages (real clips), built once; each test tampers with a copy."""
    base = tmp_path_factory.mktemp("evidence-template")
    config = site_config(base)
    signer = Signer.load_or_create(base / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, None, root=base / "evidence")
    for n in range(3):
        builder.build(make_violation(START, n, dwell_s=4.0, pre_s=1.0, post_s=1.0))
    return base / "evidence", signer.verifier


@pytest.fixture
def root(template: tuple[Path, Verifier], tmp_path: Path) -> Path:
    copy = tmp_path / "evidence"
    shutil.copytree(template[0], copy)
    return copy


@pytest.fixture
def key(template: tuple[Path, Verifier]) -> Verifier:
    return template[1]


def by_seq(root: Path) -> list[Path]:
    """Package folders in chain order."""
    return sorted(
        package_dirs(root), key=lambda p: json.loads((p / "manifest.json").read_bytes())["seq"]
    )


def _kinds(report) -> list[tuple[str, str]]:
    return sorted((f.kind, Path(f.where).name) for f in report.findings)


def test_untouched_chain_verifies(root: Path, key: Verifier) -> None:
    report = verify_chain(root, key)
    assert report.ok and report.packages == 3, report.findings


def test_flipped_byte_in_a_snapshot(root: Path, key: Verifier) -> None:
    pkg = by_seq(root)[1]
    snap = pkg / "media/cam-1/confirmed.raw.jpg"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x01
    snap.write_bytes(bytes(data))
    report = verify_chain(root, key)
    assert _kinds(report) == [("changed_file", "confirmed.raw.jpg")]
    assert "size" in report.findings[0].detail
    single, _ = verify_package(pkg, key)
    assert [f.kind for f in single.findings] == ["changed_file"]


def test_deleted_file(root: Path, key: Verifier) -> None:
    (by_seq(root)[0] / "media/cam-1/clip.mp4").unlink()
    assert _kinds(verify_chain(root, key)) == [("missing_file", "clip.mp4")]


def test_added_file(root: Path, key: Verifier) -> None:
    (by_seq(root)[2] / "media/cam-1/extra.jpg").write_bytes(b"\xff\xd8 not evidence")
    assert _kinds(verify_chain(root, key)) == [("extra_file", "extra.jpg")]


def test_edited_manifest(root: Path, key: Verifier) -> None:
    pkg = by_seq(root)[1]
    manifest = json.loads((pkg / "manifest.json").read_bytes())
    manifest["party"]["name"] = "Somebody Else"
    (pkg / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    report = verify_chain(root, key)
    # the signature no longer fits, and the next link no longer points at this manifest
    assert _kinds(report) == [("bad_signature", pkg.name), ("broken_link", by_seq(root)[2].name)]


def test_edited_manifest_resigned_by_another_key(root: Path, key: Verifier) -> None:
    pkg = by_seq(root)[2]
    other = Signer(Ed25519PrivateKey.generate())
    (pkg / "manifest.sig").write_bytes(other.sign((pkg / "manifest.json").read_bytes()))
    assert _kinds(verify_chain(root, key)) == [("bad_signature", pkg.name)]


def test_missing_signature(root: Path, key: Verifier) -> None:
    pkg = by_seq(root)[0]
    (pkg / "manifest.sig").unlink()
    assert _kinds(verify_chain(root, key)) == [("missing_signature", pkg.name)]


def test_swapped_cases(root: Path, key: Verifier) -> None:
    a, b = by_seq(root)[0], by_seq(root)[1]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    assert _kinds(verify_chain(root, key)) == [("misplaced", a.name), ("misplaced", b.name)]


def test_removed_case_breaks_the_chain(root: Path, key: Verifier) -> None:
    dirs = by_seq(root)
    shutil.rmtree(dirs[1])
    report = verify_chain(root, key)
    assert _kinds(report) == [("seq_gap", dirs[2].name)]
    assert "link 2 is missing before seq 3" in report.findings[0].detail


def test_truncated_chain(root: Path, key: Verifier) -> None:
    shutil.rmtree(by_seq(root)[2])
    report = verify_chain(root, key)
    assert [f.kind for f in report.findings] == ["head_mismatch"]
    assert "seq 3" in report.findings[0].detail and "seq 2" in report.findings[0].detail


def test_case_moved_to_another_day(root: Path, key: Verifier) -> None:
    pkg = by_seq(root)[0]
    other = root / "2026-11-24"
    other.mkdir()
    pkg.rename(other / pkg.name)
    assert _kinds(verify_chain(root, key)) == [("misplaced", pkg.name)]


def test_unpinned_key_still_checks_signatures(root: Path) -> None:
    report = verify_chain(root, None)
    assert report.ok and "not pinned" in report.key_source
    pkg = by_seq(root)[0]
    (pkg / "manifest.sig").write_bytes(b"\0" * 64)
    assert _kinds(verify_chain(root, None)) == [("bad_signature", pkg.name)]


def _resign_from(root: Path, first: int, signer: Signer) -> None:
    """What an attacker with their own key does: edit link `first` (seq, 0-based index), then
    re-sign it and every later link with their key, re-chaining each to the one before, and
    rewrite the ledger head to match. Every link is then consistent in itself."""
    dirs = by_seq(root)
    prev = json.loads((dirs[first] / "manifest.json").read_bytes())["prev_manifest_sha256"]
    for n, pkg in enumerate(dirs[first:]):
        manifest = json.loads((pkg / "manifest.json").read_bytes())
        if n == 0:
            manifest["party"]["name"] = "Somebody Else"
        manifest["prev_manifest_sha256"] = prev
        manifest["signer"] = {
            "algorithm": "Ed25519",
            "key_id": signer.key_id,
            "public_key": signer.verifier.public_b64,
        }
        data = manifest_bytes(manifest)
        (pkg / "manifest.json").write_bytes(data)
        (pkg / "manifest.sig").write_bytes(signer.sign(data))
        prev = hashlib.sha256(data).hexdigest()
    head = json.loads((root / ".ledger/head.json").read_text())
    (root / ".ledger/head.json").write_text(json.dumps(head | {"manifest_sha256": prev}))


def test_tail_resigned_by_another_key_fails_unpinned(root: Path, key: Verifier) -> None:
    attacker = Signer(Ed25519PrivateKey.generate())
    _resign_from(root, 1, attacker)
    report = verify_chain(root, None)
    assert not report.pinned
    assert _kinds(report) == [("key_change", by_seq(root)[1].name)]
    detail = report.findings[0].detail
    assert key.key_id in detail and attacker.key_id in detail and "seq 2" in detail
    assert report.signing_keys == [key.key_id, attacker.key_id]
    # pinned: every re-signed link is refused as well, and the change is still named
    pinned = verify_chain(root, key)
    assert sorted(f.kind for f in pinned.findings) == [
        "bad_signature",
        "bad_signature",
        "key_change",
        "unknown_key",
        "unknown_key",
    ]


def test_whole_chain_resigned_is_consistent_unless_pinned(root: Path, key: Verifier) -> None:
    attacker = Signer(Ed25519PrivateKey.generate())
    _resign_from(root, 0, attacker)
    unpinned = verify_chain(root, None)
    assert unpinned.ok and unpinned.signing_keys == [attacker.key_id]  # why pinning matters
    assert {f.kind for f in verify_chain(root, key).findings} == {"bad_signature", "unknown_key"}


def test_claimed_key_id_is_not_trusted(root: Path, key: Verifier) -> None:
    """The fingerprint is computed from the key a manifest names, not taken from its key_id."""
    attacker = Signer(Ed25519PrivateKey.generate())
    _resign_from(root, 2, attacker)
    pkg = by_seq(root)[2]
    manifest = json.loads((pkg / "manifest.json").read_bytes())
    manifest["signer"]["key_id"] = key.key_id
    data = manifest_bytes(manifest)
    (pkg / "manifest.json").write_bytes(data)
    (pkg / "manifest.sig").write_bytes(attacker.sign(data))
    head = json.loads((root / ".ledger/head.json").read_text())
    sha = hashlib.sha256(data).hexdigest()
    (root / ".ledger/head.json").write_text(json.dumps(head | {"manifest_sha256": sha}))
    report = verify_chain(root, None)
    assert _kinds(report) == [("key_change", pkg.name)]
    assert attacker.key_id in report.findings[0].detail


def _head(root: Path) -> tuple[int, str]:
    head = json.loads((root / ".ledger/head.json").read_text())
    return head["seq"], head["manifest_sha256"]


def test_removed_ledger_is_reported(root: Path, key: Verifier) -> None:
    shutil.rmtree(by_seq(root)[2])
    shutil.rmtree(root / ".ledger")
    shutil.rmtree(root / ".staging")
    assert is_evidence_root(root)  # still checked as a chain, not as one odd package
    report = verify_chain(root, key)
    assert [f.kind for f in report.findings] == ["missing_head"]
    assert "--expect-head" in report.findings[0].detail


def test_expect_head_catches_a_truncated_tail(root: Path, key: Verifier) -> None:
    """Delete the newest package and rewrite the ledger to match: the chain is consistent in
    itself; only the case system's record of the highest link it acknowledged shows it."""
    acknowledged = _head(root)
    assert verify_chain(root, key, expect_head=acknowledged).ok
    newest = by_seq(root)[2]
    shutil.rmtree(newest)
    shutil.rmtree(root / ".ledger")
    Ledger(root)  # a fresh ledger, then a head that fits the shorter chain
    second = by_seq(root)[1] / "manifest.json"
    head = {"seq": 2, "manifest_sha256": hashlib.sha256(second.read_bytes()).hexdigest()}
    (root / ".ledger/head.json").write_text(json.dumps(head | {"case_id": None, "path": None}))
    assert verify_chain(root, key).ok  # a chain cannot prove its own tail
    report = verify_chain(root, key, expect_head=acknowledged)
    assert [f.kind for f in report.findings] == ["tail_missing"]
    assert "seq 3" in report.findings[0].detail and "ends at seq 2" in report.findings[0].detail
    assert report.head is not None and report.head["seq"] == 2


def test_expect_head_catches_a_rewritten_link(root: Path, key: Verifier) -> None:
    acknowledged = _head(root)
    _resign_from(root, 2, Signer(Ed25519PrivateKey.generate()))
    report = verify_chain(root, None, expect_head=acknowledged)
    assert _kinds(report) == [
        ("key_change", by_seq(root)[2].name),
        ("tail_rewritten", by_seq(root)[2].name),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "SEQ:SHA256"),
        ("x:" + "a" * 64, "SEQ:SHA256"),
        ("0:" + "a" * 64, "SEQ:SHA256"),
        ("3:abc", "64 hex digits"),
        ("3:" + "g" * 64, "64 hex digits"),
    ],
)
def test_parse_expected_head_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_expected_head(value)
    assert parse_expected_head(" 3:" + "AB" * 32) == (3, "ab" * 32)
