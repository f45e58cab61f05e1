"""Where the evidence stage keeps its files, from the `evidence:` and `storage:` sections."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.config import SiteConfig


@dataclass(frozen=True, slots=True)
class EvidencePaths:
    root: Path
    """Evidence root: `<root>/<YYYY-MM-DD>/<case_id>/`."""
    key: Path
    public_key: Path
    cases: Path
    outbox: Path


def evidence_paths(config: SiteConfig) -> EvidencePaths:
    """Relative paths in `evidence:` are taken relative to `storage.root`."""
    storage_root = Path(config.storage.root)
    settings = config.evidence

    def under(value: Path | None, default: str) -> Path:
        path = Path(value) if value is not None else Path(default)
        return path if path.is_absolute() else storage_root / path

    key = under(settings.key, "keys/box_ed25519.pem")
    return EvidencePaths(
        root=Path(config.storage.evidence or storage_root / "evidence"),
        key=key,
        public_key=key.with_name(key.name + ".pub"),
        cases=under(settings.cases, "cases.sqlite"),
        outbox=under(settings.feed.outbox, "case_outbox.sqlite"),
    )
