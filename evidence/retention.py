"""Disk quota and retention for packages; evidence of a case still open is never removed.

Pruning keeps the chain verifiable: the manifest and its signature move to
`.ledger/pruned/<seq>-<case_id>/` (a few KB), and only then is the package folder removed
(renamed into `.staging/` first, so a crash never leaves half a package in the tree).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evidence.cases import CaseStore
from evidence.fsutil import fsync_dir, write_atomic
from evidence.ledger import LEDGER, PRUNED, STAGING, Ledger
from evidence.package import MANIFEST, SIGNATURE, package_dirs

log = logging.getLogger(__name__)


@dataclass
class RetentionReport:
    total_bytes: int = 0
    pruned: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_open: list[str] = field(default_factory=list)
    """Cases that would have gone (over quota or too old) but are still open."""
    over_quota: bool = False
    """Still over the quota after pruning everything allowed (only open cases left)."""


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).stat().st_size
    return total


class Retention:
    def __init__(
        self,
        root: Path,
        store: CaseStore,
        *,
        quota_bytes: int | None = None,
        retention_days: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.store = store
        self.quota_bytes = quota_bytes
        self.retention_days = retention_days
        self.ledger = Ledger(self.root)

    def enforce(self, now: datetime | None = None) -> RetentionReport:
        now = now or datetime.now(UTC)
        report = RetentionReport()
        packages = []
        for path in package_dirs(self.root):
            try:
                manifest = json.loads((path / MANIFEST).read_bytes())
            except (OSError, ValueError):
                continue
            packages.append((int(manifest.get("seq", 0)), path, manifest, _size(path)))
        packages.sort(key=lambda p: p[0])
        report.total_bytes = sum(p[3] for p in packages)
        open_cases = self.store.open_case_ids()
        known = {c.case_id for c in self.store.list()}
        cutoff = None if self.retention_days is None else now - timedelta(days=self.retention_days)
        total = report.total_bytes
        for seq, path, manifest, size in packages:
            over = self.quota_bytes is not None and total > self.quota_bytes
            created = datetime.fromisoformat(manifest["created_at"]["utc"])
            old = cutoff is not None and created < cutoff
            if not (over or old):
                continue
            case_id = manifest.get("case_id", path.name)
            if case_id in open_cases or case_id not in known:
                # a case the store does not know may be open in a lost store: keep it
                report.kept_open.append(case_id)
                continue
            self._prune(seq, path)
            report.pruned.append(case_id)
            report.freed_bytes += size
            total -= size
        report.over_quota = self.quota_bytes is not None and total > self.quota_bytes
        if report.over_quota:
            log.warning(
                "evidence: %d bytes on disk, quota %d; the rest belongs to open cases",
                total,
                self.quota_bytes,
            )
        return report

    def _prune(self, seq: int, path: Path) -> None:
        with self.ledger.locked():
            keep = self.root / LEDGER / PRUNED / f"{seq:010d}-{path.name}"
            keep.mkdir(parents=True, exist_ok=True)
            for name in (MANIFEST, SIGNATURE):
                if (path / name).is_file():
                    write_atomic(keep / name, (path / name).read_bytes())
            fsync_dir(keep.parent)
            trash = self.root / STAGING / f"pruned-{path.name}.{os.getpid()}.x"
            os.rename(path, trash)
            fsync_dir(path.parent)
            shutil.rmtree(trash, ignore_errors=True)
            log.info("evidence: pruned closed case %s (seq %d)", path.name, seq)
