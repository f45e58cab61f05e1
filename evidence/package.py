"""The evidence package on disk: layout, case ids, canonical manifest bytes.

```
<evidence root>/<YYYY-MM-DD>/<case_id>/manifest.json   every file with SHA-256 and size, the
                                      /manifest.sig    rule, party, place, times, previous hash
                                      /media/...       clip and snapshots
                                      /data/...        violation, sensor series, GPS track
<evidence root>/<YYYY-MM-DD>/<case_id>-after/...       follow-up: the box saw the situation end
```
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

FORMAT = "streetwatch-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
GENESIS = "0" * 64
"""`prev_manifest_sha256` of the first package of a box."""
FOLLOW_UP = "follow_up"
"""Manifest `kind` of a follow-up ("after") package: the box saw the case's situation end. A
case's own package has no `kind`."""
AFTER_SUFFIX = "-after"
"""A follow-up package lives beside its case's: `<YYYY-MM-DD>/<case_id>-after/`."""

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def case_id_of(violation_id: str, opened_at: datetime) -> str:
    """Deterministic: the same violation always becomes the same case (idempotent build)."""
    return f"{opened_at.astimezone(UTC):%Y%m%d}-{violation_id}"


def date_dir_of(opened_at: datetime) -> str:
    return f"{opened_at.astimezone(UTC):%Y-%m-%d}"


def package_dir(root: Path, case_id: str, opened_at: datetime) -> Path:
    return root / date_dir_of(opened_at) / case_id


def folder_of(manifest: dict[str, Any]) -> str | None:
    """The folder name a manifest belongs in: its case id, `<case_id>-after` for a follow-up."""
    case_id = manifest.get("case_id")
    if case_id is None:
        return None
    return f"{case_id}{AFTER_SUFFIX}" if manifest.get("kind") == FOLLOW_UP else str(case_id)


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical form (sorted keys, UTF-8, no spaces): what is hashed and signed."""
    return json.dumps(manifest, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def both_times(ts: datetime, tz: ZoneInfo) -> dict[str, str]:
    """A time in UTC and in the site's own time zone (both ISO 8601 with offset)."""
    return {"utc": ts.astimezone(UTC).isoformat(), "site": ts.astimezone(tz).isoformat()}


def package_dirs(root: Path) -> list[Path]:
    """Every committed package under the root (date folders only; staging and ledger skipped)."""
    if not root.is_dir():
        return []
    found = []
    for day in sorted(root.iterdir()):
        if day.is_dir() and _DATE_DIR.fullmatch(day.name):
            found.extend(sorted(p for p in day.iterdir() if p.is_dir()))
    return found
