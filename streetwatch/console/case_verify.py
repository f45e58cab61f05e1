"""The case pages' read side of the box's evidence: the case store's query connection, the
media types of package files, and whether a case's packages verify (its own and its follow-up
"after" package, each by signature, file hashes and its link in the hash chain)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from evidence.case_query import CaseQuery
from evidence.cases import Case
from evidence.followup import FOLLOW_UP_EVENT
from evidence.keys import Verifier
from evidence.ledger import LEDGER, PRUNED, Ledger
from evidence.package import AFTER_SUFFIX, FOLLOW_UP, GENESIS, MANIFEST
from evidence.settings import evidence_paths
from evidence.verify import verify_package
from streetwatch.console.case_models import (
    Check,
    FileCheck,
    FindingOut,
    Verification,
)

router = APIRouter()


MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".sig": "application/octet-stream",
}
SIGNATURE_KINDS = ("bad_signature", "missing_signature", "unknown_key")
FILE_KINDS = ("changed_file", "missing_file")


_verifier_cache: dict[Path, tuple[int, Verifier]] = {}
_query_lock = threading.Lock()


def case_query(request: Request) -> CaseQuery:
    """The app's read side of its case store (own connections: never waits on the pipeline)."""
    state = request.app.state
    query = getattr(state, "case_query", None)
    if query is None:
        with _query_lock:
            query = getattr(state, "case_query", None)
            if query is None:
                query = state.case_query = CaseQuery(state.ctx.cases)
    return query


def media_type(rel: str) -> str:
    return MEDIA_TYPES.get(Path(rel).suffix.lower(), "application/octet-stream")


def _verifier(request: Request) -> tuple[Verifier | None, Path]:
    """The box's public key (pinned), re-read when the file changes."""
    path = evidence_paths(request.app.state.ctx.config).public_key
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None, path
    cached = _verifier_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, Verifier.from_pem(path))
        _verifier_cache[path] = cached
    return cached[1], path


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _chain_checks(
    request: Request, recorded: str | None, package: Path, manifest: dict[str, Any]
) -> list[Check]:
    """This package's place in the hash chain: the link to the previous manifest (a package of
    the case store, or a link kept by retention), the hash the store recorded when the package
    was made, and the ledger's head when this package is the newest."""
    checks: list[Check] = []
    seq = manifest.get("seq")
    prev = str(manifest.get("prev_manifest_sha256"))
    own = _sha256(package / MANIFEST)
    if seq == 1:
        ok = prev == GENESIS
        checks.append(
            Check(
                status="ok" if ok else "bad",
                detail="link 1: names the genesis (the box's first package)"
                if ok
                else f"link 1 names previous manifest {prev[:16]}…, not the genesis",
            )
        )
    elif isinstance(seq, int):
        checks.append(_previous_link(request, package, seq, prev))
    else:
        checks.append(Check(status="bad", detail="the manifest has no sequence number"))
    if recorded:
        same = recorded == own
        checks.append(
            Check(
                status="ok" if same else "bad",
                detail="manifest.json is the one the case store recorded when it was packaged"
                if same
                else f"manifest.json hashes to {str(own)[:16]}…; the case store recorded "
                f"{recorded[:16]}… when it was packaged",
            )
        )
    root = package.parent.parent
    head = Ledger.read_head(root)
    if head is not None and isinstance(seq, int) and head.seq == seq:
        same = head.manifest_sha256 == own
        checks.append(
            Check(
                status="ok" if same else "bad",
                detail=f"the newest link: the ledger's head (seq {seq}) is this manifest"
                if same
                else f"the ledger's head at seq {seq} is manifest {head.manifest_sha256[:16]}…",
            )
        )
    return checks


def _previous_link(request: Request, package: Path, seq: int, prev: str) -> Check:
    ctx = request.app.state.ctx
    with ctx.cases.lock:
        row = ctx.cases.db.execute(
            "SELECT case_id, package FROM cases WHERE manifest_sha256 = ? LIMIT 1", (prev,)
        ).fetchone()
    whose = None if row is None else f"the manifest of case {row[0]}"
    if row is None:  # a follow-up ("after") package is recorded in its case's events
        row = case_query(request).follow_up_of(prev)
        whose = None if row is None else f"the after package of case {row[0]}"
    if row is not None and row[1]:
        earlier = Path(row[1]) / MANIFEST
        actual = _sha256(earlier)
        try:
            earlier_seq = json.loads(earlier.read_bytes()).get("seq")
        except (OSError, ValueError):
            earlier_seq = None
        if actual == prev and earlier_seq == seq - 1:
            return Check(
                status="ok",
                detail=f"link {seq}: names {whose} (link {seq - 1}), which hashes to {prev[:16]}…",
            )
        return Check(
            status="bad",
            detail=f"link {seq}: names manifest {prev[:16]}…, {whose}, but that "
            f"manifest now hashes to {str(actual)[:16]}… (seq {earlier_seq})",
        )
    pruned = package.parent.parent / LEDGER / PRUNED
    for entry in pruned.glob(f"{seq - 1}-*") if pruned.is_dir() else ():
        if _sha256(entry / MANIFEST) == prev:
            return Check(
                status="ok",
                detail=f"link {seq}: names link {seq - 1} ({entry.name}), whose package "
                "retention removed (its manifest is kept)",
            )
    return Check(
        status="bad",
        detail=f"link {seq}: no package or kept link has the previous manifest it names "
        f"({prev[:16]}…): the chain is broken before it",
    )


def verification(request: Request, case: Case) -> tuple[Verification | None, dict | None]:
    """Signature, every listed file's hash and size, and the chain link of a case's package."""
    if not case.package:
        return None, None
    return _verify_folder(
        request,
        Path(case.package),
        case.manifest_sha256,
        lambda rel: file_url(case.case_id, rel),
    )


def _verify_folder(
    request: Request,
    package: Path,
    recorded: str | None,
    url_of: Any,
    extra_chain: Any = None,
) -> tuple[Verification | None, dict | None]:
    """`verification` of one package folder; `recorded` is the manifest hash the case store
    recorded for it, `url_of(rel)` where its files are served, `extra_chain(manifest)` more
    chain checks (a follow-up's link to its case's manifest)."""
    verifier, key_path = _verifier(request)
    report, manifest = verify_package(package, verifier)
    prefix = f"{package}/"

    def local(where: str) -> str:
        return where[len(prefix) :] if where.startswith(prefix) else where

    by_file = {local(f.where): f for f in report.findings if f.kind in (*FILE_KINDS, "extra_file")}
    sig = [f for f in report.findings if f.kind in SIGNATURE_KINDS]
    key_id = (manifest or {}).get("signer", {}).get("key_id", "?")
    if sig:
        signature = Check(status="bad", detail="; ".join(f"{f.kind}: {f.detail}" for f in sig))
    elif manifest is None:
        signature = Check(status="unknown", detail="no readable manifest to check")
    else:
        how = (
            f"the box's public key ({key_path.name})"
            if verifier is not None
            else "the key the manifest names (not pinned: the box's public key is absent)"
        )
        signature = Check(
            status="ok", detail=f"Ed25519 signature by key {key_id} verifies with {how}"
        )
    files: list[FileCheck] = []
    for entry in (manifest or {}).get("files", []):
        rel = str(entry.get("path"))
        finding = by_file.get(rel)
        files.append(
            FileCheck(
                path=rel,
                role=str(entry.get("role", "")),
                size=entry.get("size"),
                sha256=entry.get("sha256"),
                status="bad" if finding else "ok",
                detail=f"{finding.kind}: {finding.detail}" if finding else "SHA-256 and size match",
                url=url_of(rel),
                media_type=media_type(rel),
            )
        )
    for rel, finding in sorted(by_file.items()):
        if finding.kind == "extra_file":
            files.append(
                FileCheck(
                    path=rel,
                    role="",
                    size=None,
                    sha256=None,
                    status="bad",
                    detail=f"{finding.kind}: {finding.detail}",
                    url="",
                    media_type=media_type(rel),
                )
            )
    chain = _chain_checks(request, recorded, package, manifest) if manifest is not None else []
    if manifest is not None and extra_chain is not None:
        chain += extra_chain(manifest)
    findings = [
        FindingOut(kind=f.kind, where=local(f.where), detail=f.detail) for f in report.findings
    ]
    findings += [
        FindingOut(kind="chain", where=MANIFEST, detail=c.detail)
        for c in chain
        if c.status == "bad"
    ]
    result = Verification(
        ok=not findings,
        pinned=verifier is not None,
        key=str(key_path) if verifier is not None else "the manifest's own key",
        signature=signature,
        files=files,
        chain=chain,
        findings=findings,
    )
    return result, manifest


def file_url(case_id: str, rel: str) -> str:
    return f"/api/v1/cases/{case_id}/files/{rel}"


def after_file_url(case_id: str, rel: str) -> str:
    return f"/api/v1/cases/{case_id}/after/files/{rel}"


def _after_folder(case: Case, events: list[Any]) -> tuple[Path, dict[str, Any]] | None:
    """The follow-up package's folder as its `follow_up` event recorded it (never from a
    request), only when it is the case's own: `<case_id>-after`."""
    for event in events:
        if event.event == FOLLOW_UP_EVENT and isinstance(event.data.get("package"), str):
            folder = Path(event.data["package"])
            if folder.name == case.case_id + AFTER_SUFFIX:
                return folder, event.data
    return None


def _follows_check(case: Case) -> Any:
    """The chain link of a follow-up to its case: it names this case and the manifest the case
    store recorded, and that manifest still hashes so."""

    def check(manifest: dict[str, Any]) -> list[Check]:
        follows = manifest.get("follows") or {}
        named = str(follows.get("manifest_sha256"))
        actual = _sha256(Path(case.package) / MANIFEST) if case.package else None
        if manifest.get("kind") != FOLLOW_UP or follows.get("case_id") != case.case_id:
            detail = f"not a follow-up of case {case.case_id} (kind {manifest.get('kind')!r})"
            return [Check(status="bad", detail=detail)]
        if named == case.manifest_sha256 and named == actual:
            return [
                Check(
                    status="ok",
                    detail=f"follows the case's own manifest ({named[:16]}…), which still "
                    "hashes so",
                )
            ]
        return [
            Check(
                status="bad",
                detail=f"names the case's manifest as {named[:16]}…; the case store recorded "
                f"{str(case.manifest_sha256)[:16]}… and it hashes to {str(actual)[:16]}…",
            )
        ]

    return check
