"""The hash chain across all packages of the box, and the atomic commit of a package.

A package is built in `<root>/.staging/`, then committed under an exclusive lock (thread lock
plus `flock`, so two processes cannot fork the chain): the manifest takes the next sequence
number and the SHA-256 of the previous manifest, is signed, and the folder is renamed into
place. `.ledger/pending.json` records the commit in flight; `.ledger/head.json` the last link.
After a kill -9 at any point, `Ledger(root)` finishes (the rename happened: head advances) or
discards (it did not: the staging folder is removed) what was pending.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from evidence.fsutil import fsync_dir, write_atomic, write_file
from evidence.keys import Signer
from evidence.package import GENESIS, MANIFEST, SIGNATURE, manifest_bytes

log = logging.getLogger(__name__)

LEDGER = ".ledger"
STAGING = ".staging"
PRUNED = "pruned"
"""`.ledger/pruned/<seq>-<case_id>/`: manifest and signature of a package removed by retention."""


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    manifest_sha256: str
    case_id: str | None = None
    path: str | None = None
    """Package folder relative to the root."""


GENESIS_HEAD = Head(0, GENESIS)


@dataclass(frozen=True, slots=True)
class Committed:
    path: Path
    seq: int
    manifest_sha256: str
    created: bool
    """False when the package already existed (idempotent rebuild)."""


class Ledger:
    _locks: ClassVar[dict[Path, threading.Lock]] = {}
    _locks_guard = threading.Lock()

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.dir = self.root / LEDGER
        self.staging = self.root / STAGING
        for d in (self.root, self.dir, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        with Ledger._locks_guard:
            self._thread_lock = Ledger._locks.setdefault(self.root, threading.Lock())
        with self.locked():
            self._recover(clean_staging=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def recover(self) -> None:
        """Finish (or discard) a commit that failed after its pending record was written: a
        full disk can stop `commit` between the rename and the new head."""
        if (self.dir / "pending.json").exists():
            with self.locked():
                self._recover(clean_staging=False)

    def head(self) -> Head:
        return self.read_head(self.root) or GENESIS_HEAD

    @staticmethod
    def read_head(root: Path) -> Head | None:
        """The recorded head of the chain under `root`; None when nothing was committed."""
        path = Path(root) / LEDGER / "head.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Head(data["seq"], data["manifest_sha256"], data.get("case_id"), data.get("path"))

    def new_staging(self, case_id: str) -> Path:
        path = self.staging / f"{case_id}.{os.getpid()}.{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit(
        self,
        staging: Path,
        final: Path,
        make_manifest: Callable[[int, str], dict[str, Any]],
        signer: Signer,
        *,
        crash_hook: Callable[[str], None] | None = None,
    ) -> Committed:
        """Seal `staging` as the next link and rename it to `final` (under `root`)."""
        hook = crash_hook or (lambda _point: None)
        with self.locked():
            self._recover(clean_staging=False)
            if (final / MANIFEST).is_file():
                self.discard(staging)
                data = (final / MANIFEST).read_bytes()
                seq = json.loads(data).get("seq", 0)
                return Committed(final, seq, hashlib.sha256(data).hexdigest(), created=False)
            head = self.head()
            manifest = make_manifest(head.seq + 1, head.manifest_sha256)
            data = manifest_bytes(manifest)
            sha = hashlib.sha256(data).hexdigest()
            write_file(staging / MANIFEST, data)
            write_file(staging / SIGNATURE, signer.sign(data))
            hook("signed")
            _fsync_tree(staging)
            rel = final.relative_to(self.root)
            new_head = Head(head.seq + 1, sha, manifest.get("case_id"), str(rel))
            write_atomic(self.dir / "pending.json", _head_json(new_head))
            hook("pending")
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.root)
            os.rename(staging, final)
            fsync_dir(final.parent)
            fsync_dir(self.staging)
            hook("renamed")
            write_atomic(self.dir / "head.json", _head_json(new_head))
            hook("head")
            os.unlink(self.dir / "pending.json")
            fsync_dir(self.dir)
            return Committed(final, new_head.seq, sha, created=True)

    def _recover(self, *, clean_staging: bool) -> None:
        pending = self.dir / "pending.json"
        if pending.exists():
            try:
                data = json.loads(pending.read_text())
                target = self.root / data["path"]
                done = (target / MANIFEST).is_file() and hashlib.sha256(
                    (target / MANIFEST).read_bytes()
                ).hexdigest() == data["manifest_sha256"]
            except (ValueError, KeyError, OSError):
                done = False
                data = None
            if done and data is not None:
                log.warning("ledger: finishing the commit of %s after a crash", data["case_id"])
                write_atomic(self.dir / "head.json", pending.read_bytes())
            else:
                log.warning("ledger: discarding a package that was not committed before a crash")
            os.unlink(pending)
            fsync_dir(self.dir)
        if clean_staging:
            self._finish_prunes()
            for leftover in self.staging.iterdir():
                pid = leftover.name.rsplit(".", 2)[-2] if leftover.name.count(".") >= 2 else ""
                if pid.isdigit() and _alive(int(pid)):
                    continue
                log.warning("ledger: removing unfinished package %s", leftover.name)
                shutil.rmtree(leftover, ignore_errors=True)

    def _finish_prunes(self) -> None:
        """A prune interrupted after keeping the manifest: remove the package it kept."""
        pruned = self.dir / PRUNED
        if not pruned.is_dir():
            return
        for entry in pruned.iterdir():
            case_id = entry.name.split("-", 1)[-1]
            kept = entry / MANIFEST
            for package in self.root.glob(f"*/{case_id}"):
                manifest = package / MANIFEST
                same = manifest.is_file() and kept.read_bytes() == manifest.read_bytes()
                if kept.is_file() and same:
                    log.warning("ledger: finishing the prune of %s after a crash", case_id)
                    trash = self.staging / f"pruned-{case_id}.{os.getpid()}.x"
                    os.rename(package, trash)
                    fsync_dir(package.parent)
                    shutil.rmtree(trash, ignore_errors=True)


def _head_json(head: Head) -> bytes:
    return json.dumps(
        {
            "seq": head.seq,
            "manifest_sha256": head.manifest_sha256,
            "case_id": head.case_id,
            "path": head.path,
        },
        sort_keys=True,
    ).encode()


def _fsync_tree(path: Path) -> None:
    """Files were fsynced as written; make their directory entries durable too."""
    for dirpath, _dirs, _files in os.walk(path, topdown=False):
        fsync_dir(Path(dirpath))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
