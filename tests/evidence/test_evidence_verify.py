"""Tampering: verify names exactly what was done, and nothing else."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.builder import EvidenceBuilder
from evidence.keys import Signer, Verifier
from evidence.package import package_dirs
from evidence.verify import verify_chain, verify_package
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
