"""The cases pages of the console and their JSON API: the filtered, paged case list; a case with
its evidence package (snapshots, clip, sensor series, GPS track, party, rule, manifest), whether
that package verifies, and its event timeline; the package's files, served safely.

A package's files are served only by (case id, path listed in its manifest): the case id must
look like one, the package folder comes from the case store (never from the request), and the
resolved file must lie inside that folder. Anything else is a 404.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from evidence.case_query import MAX_PER_PAGE, CaseFilter, CasePage, parse_when
from evidence.cases import CLEARED, ESCALATED, Case, State
from evidence.package import MANIFEST, SIGNATURE
from ingest.config import DeviceKind
from ingest.decisions import EVENTS as DECISION_EVENTS
from streetwatch.console.case_models import (
    CaseDetail,
    CaseFilters,
    CaseInfo,
    CaseItem,
    CaseLink,
    CaseList,
    Cleared,
    DecisionOut,
    Disposal,
    EscalationOut,
    EventOut,
    FileCheck,
    FollowUpOut,
)
from streetwatch.console.case_verify import (
    MEDIA_TYPES,
    _after_folder,
    _follows_check,
    _verify_folder,
    after_file_url,
    case_query,
    media_type,
    verification,
)
from streetwatch.console.decisions import decision_panel
from streetwatch.console.errors import refusals
from streetwatch.console.security import Principal, principal
from streetwatch.console.templating import page

router = APIRouter()

SAFE_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

Caller = Annotated[Principal, Depends(principal)]


# -- helpers --------------------------------------------------------------------------------


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
