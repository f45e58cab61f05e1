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
| `missing_head` | packages but no recorded head: the ledger itself was removed |
| `unknown_key` | signed by another key than the one verifying |
| `key_change` | the signing key changes inside the chain (e.g. a re-signed tail) |
| `tail_missing` | the chain ends before `expect_head` (the case system's acknowledged head) |
| `tail_rewritten` | the chain has another manifest at the sequence number of `expect_head` |

A chain cannot prove its own tail: deleting the newest packages together with `.ledger/`
leaves a shorter chain that is consistent in itself. Only a record held elsewhere (the case
system's highest acknowledged sequence number and manifest hash, passed as `expect_head`)
shows it. Without a pinned key, anyone can re-sign a whole chain with their own key; a key that
changes inside the chain is always reported.
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
from evidence.keys import Verifier, key_id_of_b64
from evidence.ledger import LEDGER, PRUNED, STAGING, Ledger
from evidence.package import (
    FOLLOW_UP,
    GENESIS,
    MANIFEST,
    SIGNATURE,
    date_dir_of,
    folder_of,
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
    pinned: bool = False
    """Signatures were checked against a key given from outside, not the manifests' own."""
    signing_keys: list[str] = field(default_factory=list)
    """Fingerprints of the keys the manifests name, in chain order of first appearance."""
    head: dict[str, Any] | None = None
    """The last link of the chain: seq, manifest SHA-256, case id."""
    config: str | None = None
    """The devices.yaml the key came from (set by the CLI); None when none was read."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "packages": self.packages,
            "pruned_links": self.pruned,
            "key": self.key_source,
            "pinned": self.pinned,
            "signing_keys": self.signing_keys,
            "head": self.head,
            "config": self.config,
            "findings": [asdict(f) for f in self.findings],
        }

    def _saw_key(self, key_id: str | None) -> None:
        if key_id is not None and key_id not in self.signing_keys:
            self.signing_keys.append(key_id)


@dataclass(frozen=True, slots=True)
class _Link:
    seq: int
    sha256: str
    prev: str
    where: str
    case_id: str
    key_id: str | None
    """Fingerprint of the key the manifest names (computed from the key itself)."""


def verify_package(
    path: Path, verifier: Verifier | None = None, *, report: Report | None = None
) -> tuple[Report, dict[str, Any] | None]:
    """Files, sizes, hashes, signature and place of one package. Returns the manifest too."""
    report = report or Report()
    report.packages += 1
    report.pinned = verifier is not None
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
    report._saw_key(_named_key_id(manifest))
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
    if folder_of(manifest) != path.name:
        what = "the follow-up of case" if manifest.get("kind") == FOLLOW_UP else "case"
        report.findings.append(
            Finding("misplaced", where, f"folder {path.name} holds {what} {case_id}")
        )
    return report, manifest


def verify_chain(
    root: Path,
    verifier: Verifier | None = None,
    *,
    expect_head: tuple[int, str] | None = None,
) -> Report:
    """Every package and pruned link under an evidence root, and the chain through them.

    `expect_head` is (seq, manifest SHA-256) of a link known from outside the box, e.g. the
    highest one the case system acknowledged: the chain must reach it, with that very manifest.
    """
    report = Report(pinned=verifier is not None)
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
    links.sort(key=lambda k: k.seq)
    report.signing_keys = []
    for link in links:
        report._saw_key(link.key_id)
    _check_links(links, report)
    _check_key_changes(links, report)
    head = Ledger.read_head(root)
    last = max(links, key=lambda k: k.seq) if links else None
    if last is not None:
        report.head = {"seq": last.seq, "manifest_sha256": last.sha256, "case_id": last.case_id}
    if head is None and last is not None:
        if (root / LEDGER / "pending.json").exists():
            why = "a commit was interrupted (.ledger/pending.json): start the box to finish it"
        elif (root / LEDGER).is_dir():
            why = ".ledger/head.json was removed"
        else:
            why = "the ledger (.ledger/) was removed"
        report.findings.append(
            Finding(
                "missing_head",
                str(root / LEDGER / "head.json"),
                f"no recorded head, yet the chain has {len(links)} link(s) up to seq {last.seq}: "
                f"{why}; the box's own record of its newest package is gone (check the tail "
                "against the case system's record: --expect-head SEQ:SHA256)",
            )
        )
    if head is not None and (last is None or last.sha256 != head.manifest_sha256):
        report.findings.append(
            Finding(
                "head_mismatch",
                str(root / LEDGER / "head.json"),
                f"ledger head is seq {head.seq} ({head.case_id}); the chain ends at "
                + ("nothing" if last is None else f"seq {last.seq} ({last.case_id})"),
            )
        )
    if expect_head is not None:
        _check_expected_head(links, expect_head, root, report)
    return report


def parse_expected_head(value: str) -> tuple[int, str]:
    """`SEQ:SHA256` (the manifest's full SHA-256 in hex) as given to `--expect-head`."""
    seq, sep, sha = value.strip().partition(":")
    sha = sha.strip().lower()
    if not sep or not seq.strip().isdigit() or int(seq) < 1:
        raise ValueError(f"{value!r}: expected SEQ:SHA256, e.g. 42:{'ab' * 32}")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{value!r}: the SHA-256 must be 64 hex digits (got {len(sha)})")
    return int(seq), sha


def _check_expected_head(
    links: list[_Link], expect: tuple[int, str], root: Path, report: Report
) -> None:
    seq, sha = expect
    at_seq = [k for k in links if k.seq == seq]
    if any(k.sha256 == sha for k in at_seq):
        return
    if not at_seq:
        last = links[-1].seq if links else 0
        report.findings.append(
            Finding(
                "tail_missing",
                str(root),
                f"the case system acknowledged seq {seq} (manifest {sha[:16]}…); "
                + (
                    f"the chain ends at seq {last}: its tail was removed"
                    if last < seq
                    else f"the chain has no link {seq}"
                ),
            )
        )
        return
    link = at_seq[0]
    report.findings.append(
        Finding(
            "tail_rewritten",
            link.where,
            f"seq {seq} is manifest {link.sha256[:16]}… ({link.case_id}); the case system "
            f"acknowledged manifest {sha[:16]}… at seq {seq}: the chain was rewritten",
        )
    )


def _check_key_changes(links: list[_Link], report: Report) -> None:
    """A chain is signed by one box key: report every link where the named key changes."""
    previous: _Link | None = None
    for link in links:
        if link.key_id is None:
            continue
        if previous is not None and link.key_id != previous.key_id:
            report.findings.append(
                Finding(
                    "key_change",
                    link.where,
                    f"seq {link.seq} is signed by key {link.key_id}, seq {previous.seq} "
                    f"({previous.where}) by key {previous.key_id}: the signing key changes "
                    "inside the chain",
                )
            )
        previous = link


def _named_key_id(manifest: dict[str, Any]) -> str | None:
    """Fingerprint of the key a manifest names: computed from the key, not the claimed id."""
    signer = manifest.get("signer")
    if not isinstance(signer, dict):
        return None
    try:
        return key_id_of_b64(signer["public_key"])
    except (KeyError, TypeError, ValueError):
        key_id = signer.get("key_id")
        return None if key_id is None else str(key_id)


def _link(path: Path, manifest: dict[str, Any], where: str) -> _Link:
    return _Link(
        seq=int(manifest.get("seq", 0)),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        prev=str(manifest.get("prev_manifest_sha256")),
        where=where,
        case_id=str(manifest.get("case_id")),
        key_id=_named_key_id(manifest),
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
    """A box's evidence root: its ledger, its staging folder, or date folders of packages
    (a root whose `.ledger/` was removed is still one, and is checked as a chain)."""
    return (path / LEDGER).is_dir() or (path / STAGING).is_dir() or bool(package_dirs(path))
