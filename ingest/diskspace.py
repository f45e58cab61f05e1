"""Free space on the storage disk.

Every stage of `streetwatch run` writes under the storage root (journal, case store, outbox,
evidence packages, sensor state). When that disk fills up, a write that runs into ENOSPC halfway
leaves the stage to clean up after itself; `DiskGuard.check()` refuses new writes early instead,
once free space falls below `storage.min_free_mb`, with an error that says so. Stages then hold
their work (MQTT messages stay unacknowledged, cases stay opened) and retry, so nothing is lost;
the refusals and the ENOSPC errors that still happen (another program filling the disk between
the check and the write) are counted per stage and shown on /metrics and /healthz.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13


class DiskFull(OSError):
    """Free space under the storage root is below `storage.min_free_mb`."""

    def __init__(self, root: Path, free: int, minimum: int) -> None:
        super().__init__(
            errno.ENOSPC,
            f"storage disk nearly full: {free / 2**20:.1f} MB free under {root}, below"
            f" storage.min_free_mb ({minimum / 2**20:.0f} MB); writes wait until space is freed",
        )


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT, or SQLite's "database or disk is full", anywhere in the exception chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (
            getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)
        ):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DiskGuard:
    """Checks free space under `root` before a stage writes; thread-safe and cheap (statvfs)."""

    FULL_FOR_S = 5.0
    """An ENOSPC error keeps the guard reporting `full` this long after it was seen (free space
    alone cannot tell: SQLite may fail to grow its WAL with a few pages still free)."""

    def __init__(self, root: str | Path, min_free_bytes: int) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._full_at = float("-inf")

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return -1
        return st.f_bavail * st.f_frsize

    def check(self, stage: str) -> None:
        """Raise DiskFull (counted as a refusal of `stage`) when free space is below the floor."""
        free = self.free_bytes()
        if 0 <= free < self.min_free_bytes:
            with self._lock:
                self.stats[f"refused.{stage}"] += 1
            raise DiskFull(self.root, free, self.min_free_bytes)

    def failed(self, stage: str, exc: BaseException) -> bool:
        """Count `exc` when it is a full disk (a refusal or ENOSPC); False for any other error."""
        if not is_disk_full(exc):
            return False
        with self._lock:
            self._full_at = time.monotonic()
            if not isinstance(exc, DiskFull):
                self.stats[f"enospc.{stage}"] += 1
        return True

    @property
    def full(self) -> bool:
        """Below the floor now, or a disk-full error within the last FULL_FOR_S seconds."""
        free = self.free_bytes()
        if 0 <= free < self.min_free_bytes:
            return True
        with self._lock:
            return time.monotonic() - self._full_at < self.FULL_FOR_S

    def counters(self) -> dict[str, float]:
        """For /metrics: refusals and ENOSPC errors per stage, free bytes, full (0/1)."""
        with self._lock:
            out: dict[str, float] = {f"disk_full_{k}": v for k, v in self.stats.items()}
        out["free_bytes"] = float(max(self.free_bytes(), 0))
        out["disk_full"] = float(self.full)
        return out

    def status(self) -> dict[str, object]:
        """For /healthz."""
        free = self.free_bytes()
        return {
            "root": str(self.root),
            "free_mb": round(free / 2**20, 1),
            "min_free_mb": round(self.min_free_bytes / 2**20, 1),
            "full": self.full,
        }
