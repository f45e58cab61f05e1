"""Check one package, or the whole chain of a box, and say exactly what is wrong.

Each problem is one `Finding` with a distinct kind:

| kind | meaning |
|---|---|
| `changed_file` | a listed file's SHA-256 or size differs from the manifest |
| `missing_file` | a listed file is not there |
| `extra_file` | a file is there that the manifest does not list |
| `bad_signature` | manifest.sig does not verify against the box's public key |
| `missing_signature` | manifest.sig is absent |
| `bad_manifest` | manifest.json is absent or not a readable manifest |
| `misplaced` | the folder is not where the manifest's case id and date put it |
| `broken_link` | `prev_manifest_sha256` is not the SHA-256 of the previous link |
| `seq_gap` / `duplicate_seq` | links missing from, or doubled in, the chain |
| `head_mismatch` | the last link is not the ledger's recorded head (truncation) |
| `unknown_key` | signed by another key than the one verifying |
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from evidence.fsutil import sha256_file
from evidence.keys import Verifier
from evidence.ledger import LEDGER, PRUNED, STAGING, Ledger
from evidence.package import (
    GENESIS,
    MANIFEST,
    SIGNATURE,
    date_dir_of,
    package_dirs,
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    where: str
    """Package folder (relative to the root where known) or file path."""
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass
class Report:
    packages: int = 0
    pruned: int = 0
    findings: list[Finding] = field(default_factory=list)
    key_source: str = ""

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "packages": self.packages,
            "pruned_links": self.pruned,
            "key": self.key_source,
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class _Link:
    seq: int
    sha256: str
    prev: str
    where: str
    case_id: str


def verify_package(
    path: Path, verifier: Verifier | None = None, *, report: Report | None = None
) -> tuple[Report, dict[str, Any] | None]:
    """Files, sizes, hashes, signature and place of one package. Returns the manifest too."""
    report = report or Report()
    report.packages += 1
    where = str(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        report.findings.append(Finding("bad_manifest", where, "manifest.json is missing"))
        return report, None
    data = manifest_path.read_bytes()
    try:
        manifest = json.loads(data)
        listed = {f["path"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        report.findings.append(Finding("bad_manifest", where, f"unreadable manifest: {exc}"))
        return report, None
    _check_signature(path, data, manifest, verifier, report)
    for rel, entry in sorted(listed.items()):
        file = path / rel
        if not _inside(path, file):
            report.findings.append(Finding("bad_manifest", where, f"{rel} points outside"))
            continue
        if not file.is_file():
            report.findings.append(Finding("missing_file", f"{where}/{rel}", "listed, not there"))
            continue
        sha, size = sha256_file(file)
        if sha != entry.get("sha256") or size != entry.get("size"):
            report.findings.append(
                Finding(
                    "changed_file",
                    f"{where}/{rel}",
                    f"sha256 {sha[:16]}… size {size}; manifest says "
                    f"{str(entry.get('sha256'))[:16]}… size {entry.get('size')}",
                )
            )
    for file in sorted(_files(path)):
        rel = file.relative_to(path).as_posix()
        if rel not in listed and rel not in (MANIFEST, SIGNATURE):
            report.findings.append(Finding("extra_file", f"{where}/{rel}", "not in the manifest"))
    case_id = manifest.get("case_id")
    if case_id != path.name:
        report.findings.append(
            Finding("misplaced", where, f"folder {path.name} holds case {case_id}")
        )
    return report, manifest


def verify_chain(root: Path, verifier: Verifier | None = None) -> Report:
    """Every package and pruned link under an evidence root, and the chain through them."""
    report = Report()
    links: list[_Link] = []
    for path in package_dirs(root):
        _, manifest = verify_package(path, verifier, report=report)
        if manifest is None:
            continue
        rel = path.relative_to(root).as_posix()
        _check_date(path, manifest, rel, report)
        links.append(_link(path / MANIFEST, manifest, rel))
    pruned_dir = root / LEDGER / PRUNED
    if pruned_dir.is_dir():
        for entry in sorted(p for p in pruned_dir.iterdir() if p.is_dir()):
            report.pruned += 1
            data = (entry / MANIFEST).read_bytes() if (entry / MANIFEST).is_file() else b""
            try:
                manifest = json.loads(data)
            except ValueError:
                report.findings.append(Finding("bad_manifest", str(entry), "unreadable"))
                continue
            _check_signature(entry, data, manifest, verifier, report)
            links.append(_link(entry / MANIFEST, manifest, f"{LEDGER}/{PRUNED}/{entry.name}"))
    _check_links(links, report)
    head = Ledger.read_head(root)
    last = max(links, key=lambda k: k.seq) if links else None
    if head is not None and (last is None or last.sha256 != head.manifest_sha256):
        report.findings.append(
            Finding(
                "head_mismatch",
                str(root / LEDGER / "head.json"),
                f"ledger head is seq {head.seq} ({head.case_id}); the chain ends at "
                + ("nothing" if last is None else f"seq {last.seq} ({last.case_id})"),
            )
        )
    return report


def _link(path: Path, manifest: dict[str, Any], where: str) -> _Link:
    return _Link(
        seq=int(manifest.get("seq", 0)),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        prev=str(manifest.get("prev_manifest_sha256")),
        where=where,
        case_id=str(manifest.get("case_id")),
    )


def _check_links(links: list[_Link], report: Report) -> None:
    by_seq: dict[int, _Link] = {}
    for link in sorted(links, key=lambda k: k.seq):
        if link.seq in by_seq:
            report.findings.append(
                Finding(
                    "duplicate_seq", link.where, f"seq {link.seq} also at {by_seq[link.seq].where}"
                )
            )
            continue
        by_seq[link.seq] = link
    if not by_seq:
        return
    expected = 1
    for seq in sorted(by_seq):
        link = by_seq[seq]
        if seq != expected:
            report.findings.append(
                Finding(
                    "seq_gap",
                    link.where,
                    (
                        f"link {expected} is missing"
                        if seq - 1 == expected
                        else f"links {expected}..{seq - 1} are missing"
                    )
                    + f" before seq {seq}",
                )
            )
        previous = by_seq.get(seq - 1)
        want = GENESIS if seq == 1 else (previous.sha256 if previous else None)
        if want is not None and link.prev != want:
            actual = "the genesis" if previous is None else f"{previous.where}, {want[:16]}…"
            report.findings.append(
                Finding(
                    "broken_link",
                    link.where,
                    f"seq {seq} names previous manifest {link.prev[:16]}…, not {actual}",
                )
            )
        expected = seq + 1


def _check_signature(
    path: Path,
    data: bytes,
    manifest: dict[str, Any],
    verifier: Verifier | None,
    report: Report,
) -> None:
    sig_path = path / SIGNATURE
    if not sig_path.is_file():
        report.findings.append(Finding("missing_signature", str(path), "manifest.sig is missing"))
        return
    key = verifier
    if key is None:
        try:
            key = Verifier.from_b64(manifest["signer"]["public_key"])
        except (KeyError, TypeError, ValueError):
            report.findings.append(Finding("bad_manifest", str(path), "no signer public key"))
            return
        report.key_source = report.key_source or "the key named in each manifest (not pinned)"
    elif manifest.get("signer", {}).get("key_id") not in (None, key.key_id):
        report.findings.append(
            Finding(
                "unknown_key",
                str(path),
                f"signed by key {manifest['signer']['key_id']}, verifying with {key.key_id}",
            )
        )
    if not key.verify(sig_path.read_bytes(), data):
        report.findings.append(
            Finding("bad_signature", str(path), "manifest.sig does not verify manifest.json")
        )


def _check_date(path: Path, manifest: dict[str, Any], rel: str, report: Report) -> None:
    opened = manifest.get("time_window", {}).get("opened_at", {}).get("utc")
    if not opened:
        return
    day = date_dir_of(datetime.fromisoformat(opened))
    if path.parent.name != day:
        report.findings.append(
            Finding("misplaced", rel, f"case {manifest.get('case_id')} belongs under {day}/")
        )


def _files(path: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(path):
        out.extend(Path(dirpath) / f for f in files)
    return out


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def is_evidence_root(path: Path) -> bool:
    return (path / LEDGER).is_dir() or (path / STAGING).is_dir()
