"""The cases pages of the console and their JSON API: the filtered, paged case list; a case with
its evidence package (snapshots, clip, sensor series, GPS track, party, rule, manifest), whether
that package verifies, and its event timeline; the package's files, served safely.

A package's files are served only by (case id, path listed in its manifest): the case id must
look like one, the package folder comes from the case store (never from the request), and the
resolved file must lie inside that folder. Anything else is a 404.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from evidence.case_query import MAX_PER_PAGE, CaseFilter, CasePage, CaseQuery, parse_when
from evidence.cases import CLEARED, ESCALATED, Case, State
from evidence.followup import FOLLOW_UP_EVENT
from evidence.keys import Verifier
from evidence.ledger import LEDGER, PRUNED, Ledger
from evidence.package import AFTER_SUFFIX, FOLLOW_UP, GENESIS, MANIFEST, SIGNATURE
from evidence.settings import evidence_paths
from evidence.verify import verify_package
from ingest.config import DeviceKind
from ingest.decisions import EVENTS as DECISION_EVENTS
from streetwatch.console.decisions import decision_panel
from streetwatch.console.errors import refusals
from streetwatch.console.security import Principal, principal
from streetwatch.console.templating import page

router = APIRouter()

SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
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

Status = Literal["ok", "bad", "unknown"]
Caller = Annotated[Principal, Depends(principal)]


# -- response models ------------------------------------------------------------------------


class CaseItem(BaseModel):
    case_id: str
    rule_id: str
    category: str
    state: str
    opened_at: str
    deadline: str | None
    escalated: bool
    zone: str | None
    zone_kind: str | None
    devices: list[str]
    party: str | None
    """The violation's party (a merchant id); a vehicle's plate is in the case's manifest."""
    packaged: bool
    cleared_at: str | None = None
    """When the box saw the situation end (None: not cleared by the box)."""
    disposal_s: float | None = None
    """Seconds from opening to that clearance."""
    escalation_level: int = 0
    """How many of its rule's escalation levels have passed (0: none)."""
    repeat_of: str | None = None
    """The earlier case whose situation this one repeats."""
    review: str | None = None
    """The box review: pending, confirmed or rejected (None: the rule asks for none)."""


class CaseFilters(BaseModel):
    rule: str | None = None
    state: str | None = None
    zone: str | None = None
    device: str | None = None
    since: str | None = None
    until: str | None = None


class CaseList(BaseModel):
    items: list[CaseItem]
    total: int
    page: int
    per_page: int
    pages: int
    filters: CaseFilters


class Check(BaseModel):
    status: Status
    detail: str


class FileCheck(BaseModel):
    path: str
    role: str
    size: int | None
    sha256: str | None
    status: Status
    detail: str
    url: str
    media_type: str


class FindingOut(BaseModel):
    kind: str
    where: str
    detail: str


class Verification(BaseModel):
    ok: bool
    pinned: bool
    """Checked against the box's own public key (not merely the key the manifest names)."""
    key: str
    signature: Check
    files: list[FileCheck]
    chain: list[Check]
    findings: list[FindingOut]


class EventOut(BaseModel):
    seq: int
    event: str
    at: str
    data: dict[str, Any]


class CaseInfo(BaseModel):
    case_id: str
    violation_id: str
    state: str
    rule_id: str
    category: str
    site_id: str
    opened_at: str
    deadline: str | None
    escalated_at: str | None
    package: str | None
    manifest_sha256: str | None
    updated_at: str
    chain_seq: int | None
    acked_at: str | None
    ack_ref: str | None
    cleared_at: str | None = None
    repeat_of: str | None = None
    review: str | None = None
    escalation_level: int = 0


class Cleared(BaseModel):
    """The box saw the case's situation end."""

    at: str
    disposal_s: float | None
    """Seconds from opening to the clearance."""
    how: str | None
    """How it ended (the subject left, the bay is vacant, the goods were taken in)."""
    within_deadline: bool | None
    """None: the case has no deadline."""
    observation: dict[str, Any] | None
    """The observation that showed the end, in brief."""


class DecisionOut(BaseModel):
    """A decision of the case system (or an operator's on the box)."""

    seq: int
    event: str
    at: str
    by: str | None
    source: str | None
    reason: str | None
    how: str | None
    note: str | None


class EscalationOut(BaseModel):
    level: int
    of: int | None
    at: str
    overdue_s: float | None


class CaseLink(BaseModel):
    """Another case of the same rule and zone: the one this repeats, or one repeating this."""

    case_id: str
    state: str | None
    opened_at: str | None
    cleared_at: str | None
    url: str


class FollowUpOut(BaseModel):
    """The follow-up ("after") evidence package the box made when it saw the situation end."""

    folder: str
    seq: int | None
    manifest_sha256: str | None
    manifest: dict[str, Any] | None
    verification: Verification | None
    """Its own signature, files and chain link, and that it names this case's manifest."""


class Disposal(BaseModel):
    """The enforcement loop of a case: deadline, clearance by the box, the case system's
    decisions, escalations, repeats and the follow-up package."""

    opened_at: str
    deadline: str | None
    cleared: Cleared | None
    review: str | None
    decisions: list[DecisionOut]
    escalation_level: int
    escalation_levels: int | None
    """How many levels the case's rule escalates at (None: the rule has no deadline)."""
    escalations: list[EscalationOut]
    repeat_of: CaseLink | None
    repeated_by: list[CaseLink]
    follow_up: FollowUpOut | None


class CaseDetail(BaseModel):
    case: CaseInfo
    violation: dict[str, Any]
    """The violation's summary: zone, devices, subject, party id, location, window."""
    manifest: dict[str, Any] | None
    verification: Verification | None
    events: list[EventOut]
    disposal: Disposal


# -- helpers --------------------------------------------------------------------------------


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


def _case_or_404(request: Request, case_id: str) -> Case:
    if not SAFE_CASE_ID.fullmatch(case_id):
        raise HTTPException(404, "no such case")
    case = request.app.state.ctx.cases.find(case_id)
    if case is None:
        raise HTTPException(404, "no such case")
    return case


def _filters(
    request: Request,
    rule: str | None,
    state: str | None,
    zone: str | None,
    device: str | None,
    since: str | None,
    until: str | None,
) -> CaseFilter:
    tz = request.app.state.ctx.config.site.tz
    try:
        return CaseFilter(
            rule=rule or None,
            state=state or None,
            zone=zone or None,
            device=device or None,
            since=parse_when(since, tz),
            until=parse_when(until, tz, end=True),
        )
    except ValueError as exc:
        raise HTTPException(400, f"bad filter: {exc}") from None


def _list(request: Request, filters: CaseFilter, raw: dict[str, Any], number: int, per: int):
    found: CasePage = case_query(request).page(filters, number, per)
    return CaseList(
        items=[CaseItem(**row.to_dict()) for row in found.items],
        total=found.total,
        page=found.page,
        per_page=found.per_page,
        pages=found.pages,
        filters=CaseFilters(**{k: v or None for k, v in raw.items()}),
    )


_verifier_cache: dict[Path, tuple[int, Verifier]] = {}


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


def _link(ctx: Any, case_id: str) -> CaseLink:
    other = ctx.cases.find(case_id) if SAFE_CASE_ID.fullmatch(case_id) else None

    def iso(ts: Any) -> str | None:
        return None if ts is None else ts.isoformat()

    return CaseLink(
        case_id=case_id,
        state=None if other is None else other.state.value,
        opened_at=None if other is None else iso(other.opened_at),
        cleared_at=None if other is None else iso(other.cleared_at),
        url=f"/cases/{case_id}",
    )


def disposal(request: Request, case: Case, events: list[Any], violation: dict) -> Disposal:
    """The loop of a case from its columns and events (and the repeats that name it)."""
    ctx = request.app.state.ctx
    cleared = None
    if case.cleared_at is not None:
        event = next((e for e in events if e.event == CLEARED), None)
        data = event.data if event is not None else {}
        shown = (data.get("clearance") or {}).get("observation")
        cleared = Cleared(
            at=case.cleared_at.isoformat(),
            disposal_s=case.disposal_s,
            how=data.get("how"),
            within_deadline=None if case.deadline is None else case.cleared_at <= case.deadline,
            observation=None
            if not isinstance(shown, dict)
            else {k: shown.get(k) for k in ("kind", "device_id", "zone_id", "state", "last_seen")},
        )
    decisions = [
        DecisionOut(
            seq=e.seq,
            event=e.event,
            at=e.at.isoformat(),
            **{k: _text(e.data.get(k)) for k in ("by", "source", "reason", "how", "note")},
        )
        for e in events
        if e.event in DECISION_EVENTS and "source" in e.data
    ]
    escalations = [
        EscalationOut(
            level=int(e.data.get("level", 1)),
            of=e.data.get("of"),
            at=e.at.isoformat(),
            overdue_s=e.data.get("overdue_s"),
        )
        for e in events
        if e.event == ESCALATED
    ]
    levels = violation.get("escalate")
    of = None
    if escalations and escalations[-1].of:
        of = escalations[-1].of
    elif case.deadline is not None:
        of = len(levels) if isinstance(levels, list) and levels else 1
    repeats = case_query(request).repeats_of(case.case_id)
    follow_up = None
    after = _after_folder(case, events)
    if after is not None:
        folder, data = after
        checked, manifest = _verify_folder(
            request,
            folder,
            data.get("manifest_sha256"),
            lambda rel: after_file_url(case.case_id, rel),
            _follows_check(case),
        )
        follow_up = FollowUpOut(
            folder=folder.name,
            seq=data.get("seq"),
            manifest_sha256=data.get("manifest_sha256"),
            manifest=manifest,
            verification=checked,
        )
    return Disposal(
        opened_at=case.opened_at.isoformat(),
        deadline=None if case.deadline is None else case.deadline.isoformat(),
        cleared=cleared,
        review=case.review,
        decisions=decisions,
        escalation_level=case.escalation_level,
        escalation_levels=of,
        escalations=escalations,
        repeat_of=None if case.repeat_of is None else _link(ctx, case.repeat_of),
        repeated_by=[_link(ctx, r) for r in repeats],
        follow_up=follow_up,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def media_type(rel: str) -> str:
    return MEDIA_TYPES.get(Path(rel).suffix.lower(), "application/octet-stream")


def detail(request: Request, case_id: str) -> CaseDetail:
    case = _case_or_404(request, case_id)
    ctx = request.app.state.ctx
    violation = ctx.cases.violation(case_id).to_dict()
    summary = {k: violation.get(k) for k in VIOLATION_KEYS}
    checked, manifest = verification(request, case)
    recorded = ctx.cases.events(case_id)
    events = [
        EventOut(seq=e.seq, event=e.event, at=e.at.isoformat(), data=e.data) for e in recorded
    ]
    return CaseDetail(
        case=CaseInfo(**case.to_dict()),
        violation=summary,
        manifest=manifest,
        verification=checked,
        events=events,
        disposal=disposal(request, case, recorded, violation),
    )


VIOLATION_KEYS = (
    "rule_name",
    "severity",
    "situation",
    "subject",
    "subject_id",
    "zone_id",
    "zone_kind",
    "devices",
    "party",
    "location",
    "window_start",
    "window_end",
    "dispose_within_s",
    "thresholds",
)


def geofences(request: Request, devices: list[str]) -> dict[str, Any]:
    """What the GPS plot draws under a track: the site's WGS-84 zones (GPS and drone geofences,
    merchants' shop fronts) and the routes of the case's GPS devices."""
    config = request.app.state.ctx.config
    zones = [
        {"id": z.id, "kind": z.kind.value, "device": d.id, "polygon": [list(p) for p in z.polygon]}
        for d in config.devices
        if d.kind in (DeviceKind.GPS, DeviceKind.DRONE)
        for z in d.zones
    ]
    zones += [
        {"id": m.id, "kind": "shopfront", "device": None, "polygon": [list(p) for p in m.shopfront]}
        for m in config.merchants
    ]
    routes = [
        {"device": d.id, "line": [list(p) for p in d.route.line], "buffer_m": d.route.buffer_m}
        for d in config.devices
        if d.route is not None and d.id in devices
    ]
    return {"zones": zones, "routes": routes}


# -- JSON API -------------------------------------------------------------------------------


@router.get(
    "/api/v1/cases", tags=["cases"], responses=refusals(r400="a date or time it cannot read")
)
def list_cases(
    request: Request,
    _who: Caller,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[State | None, Query()] = None,
    zone: Annotated[str | None, Query(max_length=64)] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601 or a date")] = None,
    until: Annotated[str | None, Query(max_length=40, description="a date counts in full")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 50,
) -> CaseList:
    """Cases newest first, filtered by rule, state, zone, device and opening time (`since`
    inclusive, `until` exclusive; a bare date or a time without offset is in the site's zone)."""
    raw = {"rule": rule, "state": state and state.value, "zone": zone, "device": device}
    raw |= {"since": since, "until": until}
    filters = _filters(request, **raw)
    return _list(request, filters, raw, page, per_page)


@router.get("/api/v1/cases/{case_id}", tags=["cases"], responses=refusals(r404="no such case"))
def get_case(request: Request, case_id: str, _who: Caller) -> CaseDetail:
    """A case, its events, its package's manifest and whether the package verifies (signature
    against the box's key, every file's hash and size, the link to the previous manifest)."""
    return detail(request, case_id)


@router.get(
    "/api/v1/cases/{case_id}/files/{path:path}",
    tags=["cases"],
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}}},
)
def case_file(request: Request, case_id: str, path: str, _who: Caller) -> FileResponse:
    """A file of the case's evidence package (listed in its manifest, or the manifest and its
    signature), with its media type; HTTP Range requests are answered (the clip seeks)."""
    case = _case_or_404(request, case_id)
    if not case.package:
        raise HTTPException(404, "no such file")
    return _serve(Path(case.package), path)


@router.get(
    "/api/v1/cases/{case_id}/after/files/{path:path}",
    tags=["cases"],
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}}},
)
def case_after_file(request: Request, case_id: str, path: str, _who: Caller) -> FileResponse:
    """A file of the case's follow-up ("after") package (listed in its manifest, or the
    manifest and its signature): the folder its `follow_up` event recorded, never the request's."""
    case = _case_or_404(request, case_id)
    after = _after_folder(case, request.app.state.ctx.cases.events(case_id))
    if after is None:
        raise HTTPException(404, "no such file")
    return _serve(after[0], path)


def _serve(folder: Path, path: str) -> FileResponse:
    package = folder.resolve()
    if path not in (MANIFEST, SIGNATURE) and path not in _listed(package):
        raise HTTPException(404, "no such file")
    file = (package / path).resolve()
    if not file.is_relative_to(package) or not file.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(
        file,
        media_type=media_type(path),
        headers={"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _listed(package: Path) -> set[str]:
    try:
        manifest = json.loads((package / MANIFEST).read_bytes())
        return {str(f["path"]) for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


# -- pages ----------------------------------------------------------------------------------


@router.get("/cases", include_in_schema=False)
def cases_page(
    request: Request,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(max_length=64)] = None,
    zone: Annotated[str | None, Query(max_length=64)] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 50,
) -> HTMLResponse:
    raw = {"rule": rule, "state": state, "zone": zone, "device": device}
    raw |= {"since": since, "until": until}
    error = None
    try:
        filters = _filters(request, **raw)
    except HTTPException as exc:
        error, filters = str(exc.detail), CaseFilter()
    listing = _list(request, filters, raw, page_no, per_page)
    query = case_query(request)
    config = request.app.state.ctx.config
    zones = sorted({z.id for d in config.devices for z in d.zones} | set(query.zones()))
    return page(
        request,
        "cases.html",
        "cases",
        listing=listing,
        error=error,
        rules=query.rules(),
        states=[s.value for s in State],
        zones=zones,
        devices=sorted(d.id for d in config.devices),
        raw={k: v or "" for k, v in raw.items()},
    )


@router.get("/cases/{case_id}", include_in_schema=False)
def case_page(request: Request, case_id: str) -> HTMLResponse:
    found = detail(request, case_id)
    manifest = found.manifest or {}
    files = found.verification.files if found.verification else []
    media: dict[str, dict[str, Any]] = {}
    data_files: dict[str, str] = {}
    for f in files:
        if f.path.startswith("media/") and f.url:
            camera = f.path.split("/")[1]
            media.setdefault(camera, {"clip": None, "images": []})
            if f.media_type == "video/mp4":
                media[camera]["clip"] = f
            else:
                media[camera]["images"].append(f)
        elif f.path.startswith("data/") and f.url:
            data_files[Path(f.path).name] = f.url
    comparison = _before_after(files, found.disposal.follow_up)
    script = {
        "case_id": case_id,
        "data": data_files,
        "time_window": manifest.get("time_window"),
        "location": manifest.get("location"),
        "geo": geofences(request, found.violation.get("devices") or []),
    }
    return page(
        request,
        "case.html",
        "cases",
        c=found,
        v=found.verification,
        manifest=manifest,
        manifest_text=json.dumps(found.manifest, indent=2, ensure_ascii=False)
        if found.manifest
        else "",
        media=media,
        script=script,
        party=manifest.get("party"),
        d=found.disposal,
        after=found.disposal.follow_up,
        comparison=comparison,
        **decision_panel(request, case_id),
    )


BEFORE_ROLES = ("snapshot:latest", "snapshot:confirmed", "snapshot:first_seen")


def _before_after(files: list[FileCheck], follow_up: FollowUpOut | None) -> list[dict[str, Any]]:
    """Per camera of the follow-up package: its after snapshot beside the case's own last
    annotated snapshot (the view while the violation was there)."""
    if follow_up is None or follow_up.verification is None:
        return []
    shown = []
    for f in follow_up.verification.files:
        if f.role != "snapshot:after" or not f.url:
            continue
        camera = f.path.split("/")[1] if f.path.startswith("media/") else ""
        own = {g.role: g for g in files if g.path.startswith(f"media/{camera}/") and g.url}
        before = next((own[r] for r in BEFORE_ROLES if r in own), None)
        shown.append({"camera": camera, "before": before, "after": f})
    return shown
