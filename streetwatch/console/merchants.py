"""Merchants and the field's figures in the console: `/merchants` (every merchant with its grade
and offences), `/merchants/{id}` (one merchant's history), and their JSON under `/api/v1/`;
`GET /api/v1/stats` gives `streetwatch cases stats`' figures, which the Overview shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from evidence.stats import case_stats, merchant_cases, merchant_offences
from ingest.config import SafeId
from streetwatch.console.security import Principal, principal
from streetwatch.console.templating import page

router = APIRouter()

DEFAULT_DAYS = 30
"""The period the pages and the Overview's figures cover unless `days` says otherwise."""

Days = Annotated[int, Query(ge=1, le=3660, description="Cases opened in the last this many days.")]


class MerchantOut(BaseModel):
    merchant_id: str
    name: str | None
    grade: str | None
    address: str | None
    known: bool
    """In devices.yaml (a merchant removed since keeps its history)."""
    cases: int
    offences: int
    rejected: int
    escalated: int
    repeats: int
    by_rule: dict[str, int]
    last: str | None


class MerchantHistory(BaseModel):
    merchant: MerchantOut
    cases: list[dict[str, Any]]


def _since(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def merchants_of(ctx: Any, days: int) -> list[MerchantOut]:
    """Every merchant of devices.yaml and every party of a case in the period, most offences
    first."""
    counted = {m["merchant_id"]: m for m in merchant_offences(ctx.cases, _since(days))}
    known = {m.id: m for m in ctx.config.merchants}
    out = []
    for merchant_id in sorted(set(known) | set(counted)):
        m, row = known.get(merchant_id), counted.get(merchant_id, {})
        out.append(
            MerchantOut(
                merchant_id=merchant_id,
                name=m.name if m else None,
                grade=m.grade if m else None,
                address=m.address if m else None,
                known=m is not None,
                cases=row.get("cases", 0),
                offences=row.get("offences", 0),
                rejected=row.get("rejected", 0),
                escalated=row.get("escalated", 0),
                repeats=row.get("repeats", 0),
                by_rule=row.get("by_rule", {}),
                last=row.get("last"),
            )
        )
    return sorted(out, key=lambda m: (-m.offences, m.merchant_id))


def history_of(ctx: Any, merchant_id: str, days: int) -> MerchantHistory:
    found = next((m for m in merchants_of(ctx, days) if m.merchant_id == merchant_id), None)
    history = merchant_cases(ctx.cases, merchant_id)
    if found is None:
        if not history:
            raise HTTPException(404, f"no merchant {merchant_id!r}")
        found = MerchantOut(
            merchant_id=merchant_id,
            name=None,
            grade=None,
            address=None,
            known=False,
            cases=0,
            offences=0,
            rejected=0,
            escalated=0,
            repeats=0,
            by_rule={},
            last=None,
        )
    return MerchantHistory(merchant=found, cases=history)


def figures_of(ctx: Any, days: int) -> dict[str, Any]:
    offset = datetime.now(ctx.config.site.tz).utcoffset() or timedelta(0)
    return case_stats(ctx.cases, _since(days), utc_offset_s=offset.total_seconds())


@router.get("/merchants", include_in_schema=False)
def merchants_page(request: Request, days: Days = DEFAULT_DAYS) -> HTMLResponse:
    ctx = request.app.state.ctx
    merchants = merchants_of(ctx, days)
    return page(request, "merchants.html", "merchants", merchants=merchants, days=days, one=None)


@router.get("/merchants/{merchant_id}", include_in_schema=False)
def merchant_page(request: Request, merchant_id: SafeId, days: Days = DEFAULT_DAYS) -> HTMLResponse:
    ctx = request.app.state.ctx
    one = history_of(ctx, merchant_id, days)
    return page(request, "merchants.html", "merchants", merchants=[], days=days, one=one)


@router.get("/api/v1/merchants", tags=["merchants"])
async def list_merchants(
    request: Request, who: Annotated[Principal, Depends(principal)], days: Days = DEFAULT_DAYS
) -> list[MerchantOut]:
    """Every merchant (devices.yaml, and any party of a case) with its grade and its offences
    in the period: cases whose party it is, less those a reviewer rejected."""
    return await run_in_threadpool(merchants_of, request.app.state.ctx, days)


@router.get("/api/v1/merchants/{merchant_id}", tags=["merchants"])
async def merchant_history(
    request: Request,
    merchant_id: SafeId,
    who: Annotated[Principal, Depends(principal)],
    days: Days = DEFAULT_DAYS,
) -> MerchantHistory:
    """One merchant's figures in the period and its cases (newest first, at most 200)."""
    return await run_in_threadpool(history_of, request.app.state.ctx, merchant_id, days)


@router.get("/api/v1/stats", tags=["overview"])
async def stats(
    request: Request, who: Annotated[Principal, Depends(principal)], days: Days = DEFAULT_DAYS
) -> dict[str, Any]:
    """The field's figures for cases opened in the period, per rule and in total (as
    `streetwatch cases stats --json`): opened per day and month, cleared by the box vs rectified,
    disposal p50/p90 (seconds), the share within the deadline, escalations, repeats,
    rejections."""
    return await run_in_threadpool(figures_of, request.app.state.ctx, days)
