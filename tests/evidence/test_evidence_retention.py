"""Quota and retention: oldest closed cases go first, open cases never, the chain stays whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer
from evidence.package import package_dirs
from evidence.retention import Retention
from evidence.service import EvidenceService
from evidence.verify import verify_chain
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CLOSE = [
    State.SUBMITTED,
    State.ACKNOWLEDGED,
    State.CONFIRMED,
    State.NOTIFIED,
    State.RECTIFIED,
    State.CLOSED,
]


def _setup(tmp_path: Path, ring, n: int):
    config = site_config(tmp_path)
    store = CaseStore(tmp_path / "cases.sqlite")
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, None)
    service = EvidenceService(builder, store)
    cases = [
        service.handle(make_violation(START, i, dwell_s=2.0, pre_s=0.5, post_s=0.5))
        for i in range(n)
    ]
    return builder, store, signer, cases


def _close(store: CaseStore, case_id: str) -> None:
    for state in CLOSE:
        store.transition(case_id, state)


def test_quota_prunes_oldest_closed_keeps_open(tmp_path: Path, ring) -> None:
    builder, store, signer, cases = _setup(tmp_path, ring, 4)
    # cases 0 (oldest) stays open; 1, 2 and 3 are closed
    for case in cases[1:]:
        _close(store, case.case_id)
    sizes = {
        p.name: sum(f.stat().st_size for f in p.rglob("*")) for p in package_dirs(builder.root)
    }
    total = sum(sizes.values())
    quota = total - sizes[cases[1].case_id] - sizes[cases[2].case_id] // 2
    report = Retention(builder.root, store, quota_bytes=quota).enforce()
    # 0 is open (kept although oldest); 1 goes, then 2 (still over), then under quota
    assert report.kept_open == [cases[0].case_id]
    assert report.pruned == [cases[1].case_id, cases[2].case_id]
    assert not report.over_quota
    left = {p.name for p in package_dirs(builder.root)}
    assert left == {cases[0].case_id, cases[3].case_id}
    chain = verify_chain(builder.root, signer.verifier)
    assert chain.ok and chain.packages == 2 and chain.pruned == 2, chain.findings


def test_open_cases_are_never_pruned_even_over_quota(tmp_path: Path, ring) -> None:
    builder, store, _signer, cases = _setup(tmp_path, ring, 3)
    report = Retention(builder.root, store, quota_bytes=1024 * 1024 // 16).enforce()
    assert report.pruned == [] and report.over_quota
    assert sorted(report.kept_open) == sorted(c.case_id for c in cases)
    assert len(package_dirs(builder.root)) == 3


def test_age_limit(tmp_path: Path, ring) -> None:
    builder, store, signer, cases = _setup(tmp_path, ring, 2)
    for case in cases:
        _close(store, case.case_id)
    retention = Retention(builder.root, store, retention_days=30)
    assert retention.enforce().pruned == []
    report = retention.enforce(now=datetime.now(UTC) + timedelta(days=31))
    assert sorted(report.pruned) == sorted(c.case_id for c in cases)
    assert verify_chain(builder.root, signer.verifier).ok
    # the chain goes on after pruning: the next package links to the pruned head
    builder.build(make_violation(START, 9, dwell_s=2.0, pre_s=0.5, post_s=0.5))
    chain = verify_chain(builder.root, signer.verifier)
    assert chain.ok and chain.packages == 1 and chain.pruned == 2, chain.findings


def test_unknown_cases_are_kept(tmp_path: Path, ring) -> None:
    builder, _store, _signer, _cases = _setup(tmp_path, ring, 1)
    empty = CaseStore(tmp_path / "other.sqlite")
    report = Retention(builder.root, empty, retention_days=1).enforce(
        now=datetime.now(UTC) + timedelta(days=400)
    )
    assert report.pruned == [] and len(report.kept_open) == 1


def test_prune_interrupted_after_keeping_the_manifest(tmp_path: Path, ring) -> None:
    """kill -9 between keeping the manifest and removing the package: restart finishes it."""
    import shutil

    from evidence.ledger import Ledger

    builder, _store, signer, cases = _setup(tmp_path, ring, 2)
    pkg = next(p for p in package_dirs(builder.root) if p.name == cases[0].case_id)
    keep = builder.root / ".ledger" / "pruned" / f"{1:010d}-{pkg.name}"
    keep.mkdir(parents=True)
    for name in ("manifest.json", "manifest.sig"):
        shutil.copyfile(pkg / name, keep / name)
    assert [f.kind for f in verify_chain(builder.root, signer.verifier).findings] == [
        "duplicate_seq"
    ]
    Ledger(builder.root)
    assert not pkg.exists()
    chain = verify_chain(builder.root, signer.verifier)
    assert chain.ok and chain.packages == 1 and chain.pruned == 1, chain.findings
