"""The Overview page (`/`): every device and how it is doing, the broker, the disk, the sink's
and the case feed's backlogs, and today's cases by rule and state. The page polls
`GET /api/v1/overview` to stay current."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from evidence.cases import NOT_ESCALATED, CaseStore, State
from streetwatch.console.devicestatus import DeviceStatus, device_statuses
from streetwatch.console.security import Principal, principal
from streetwatch.console.templating import page

router = APIRouter()

POLL_MS = 3000


class Storage(BaseModel):
    free_bytes: int | None
    min_free_bytes: int | None
    full: bool


class RuleCases(BaseModel):
    rule_id: str
    total: int
    by_state: dict[str, int]


class CasesToday(BaseModel):
    since: datetime = Field(description="Local midnight in the site's timezone.")
    total: int
    states: list[str] = Field(description="The states that occur, in the cases' life order.")
    by_rule: list[RuleCases]


class Overview(BaseModel):
    at: datetime
    running: bool = Field(description="A pipeline runs behind this console.")
    healthy: bool
    problems: list[str] = Field(description="Why it is not healthy, for a person.")
    broker: str | None = Field(description="`connected` or `disconnected`.")
    storage: Storage | None
    feed_backlog: int | None = Field(description="Case deliveries still pending.")
    sink_backlog: int | None = Field(description="Journal records not yet in the database.")
    stages: dict[str, bool] = Field(description="Each stage thread: alive or not.")
    devices: list[DeviceStatus]
    unrouted_dead_letters: int = Field(description="Dead letters on topics of no device.")
    cases_today: CasesToday
    escalated_open: int = Field(
        0,
        description="Cases past a disposal deadline (escalated) and still open: neither cleared "
        "by the box nor rectified, rejected or closed.",
    )


def escalated_open(cases: CaseStore) -> int:
    """Escalated cases nobody has disposed of yet (the figure the Overview's card shows)."""
    with cases.lock:
        row = cases.db.execute(
            "SELECT count(*) FROM cases WHERE escalation_level > 0 AND cleared_at IS NULL"
            f" AND state NOT IN ({', '.join('?' * len(NOT_ESCALATED))})",
            tuple(s.value for s in NOT_ESCALATED),
        ).fetchone()
    return int(row[0])


def local_midnight(tz: Any, now: datetime | None = None) -> datetime:
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    return datetime.combine(today, time(0), tzinfo=tz)


def cases_since(cases: CaseStore, since: datetime) -> CasesToday:
    """Cases opened since `since`, counted by rule and state in one GROUP BY."""
    with cases.lock:
        rows = cases.db.execute(
            "SELECT rule_id, state, count(*) FROM cases WHERE opened_at >= ?"
            " GROUP BY rule_id, state ORDER BY rule_id",
            (since.timestamp(),),
        ).fetchall()
    by_rule: dict[str, dict[str, int]] = {}
    for rule_id, state, count in rows:
        by_rule.setdefault(rule_id, {})[state] = count
    order = [s.value for s in State]
    seen = {state for _, state, _ in rows}
    states = [s for s in order if s in seen] + sorted(seen - set(order))
    return CasesToday(
        since=since,
        total=sum(count for _, _, count in rows),
        states=states,
        by_rule=[
            RuleCases(rule_id=rule, total=sum(counts.values()), by_state=counts)
            for rule, counts in by_rule.items()
        ],
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _problems(detail: Mapping[str, Any], storage: Storage | None) -> list[str]:
    out = []
    if detail.get("broker") == "disconnected":
        out.append("the MQTT broker is disconnected")
    stages = detail.get("stages")
    if isinstance(stages, Mapping):
        out += [f"stage {name} has stopped" for name, alive in stages.items() if not alive]
    if storage is not None and storage.full:
        out.append("the storage disk is below its free-space floor")
    if detail.get("rules_reload"):
        out.append(f"rule reload: {detail['rules_reload']}")
    return out


def overview_of(ctx: Any, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    healthy, detail = ctx.health()
    counters = ctx.sources()
    stored = detail.get("storage") if isinstance(detail.get("storage"), Mapping) else None
    disk = counters.get("storage", {})
    storage = None
    if stored is not None or disk:
        stored = stored or {}
        free = disk.get("free_bytes")
        if free is None and isinstance(stored.get("free_mb"), int | float):
            free = stored["free_mb"] * 2**20
        floor = stored.get("min_free_mb")
        storage = Storage(
            free_bytes=_int(free),
            min_free_bytes=int(floor * 2**20) if isinstance(floor, int | float) else None,
            full=bool(stored.get("full", disk.get("disk_full", False))),
        )
    sink = detail.get("sink_backlog", counters.get("sink", {}).get("sink_backlog"))
    stages = detail.get("stages") if isinstance(detail.get("stages"), Mapping) else {}
    devices, unrouted = device_statuses(ctx.pipeline, ctx.config, now)
    return Overview(
        at=now,
        running=ctx.pipeline is not None,
        healthy=bool(healthy),
        problems=_problems(detail, storage),
        broker=detail.get("broker") if isinstance(detail.get("broker"), str) else None,
        storage=storage,
        feed_backlog=_int(counters.get("feed", {}).get("feed_backlog")),
        sink_backlog=_int(sink),
        stages={str(k): bool(v) for k, v in (stages or {}).items()},
        devices=devices,
        unrouted_dead_letters=unrouted,
        cases_today=cases_since(ctx.cases, local_midnight(ctx.config.site.tz, now)),
        escalated_open=escalated_open(ctx.cases),
    )


@router.get("/", include_in_schema=False)
def overview_page(request: Request) -> HTMLResponse:
    ctx = request.app.state.ctx
    return page(request, "overview.html", "overview", overview=overview_of(ctx), poll_ms=POLL_MS)


@router.get("/api/v1/overview", tags=["overview"])
def overview_api(request: Request, who: Annotated[Principal, Depends(principal)]) -> Overview:
    """Every device (kind, last message, rate, health, dead letters), the broker, the disk,
    the sink's and the case feed's backlogs, and today's cases (since local midnight in the
    site's timezone) by rule and state."""
    return overview_of(request.app.state.ctx)
