"""`POST /api/v1/cases/{case_id}/events`: the case system's decisions (an API token of role
operator) and an operator's (the case page's decisions panel, a session), idempotent on the
`Idempotency-Key` header (see evidence/decisions.py).

201 when the decision was applied now, 200 with the first result when its key was applied
before with the same body; 400 without a key, 404 for an unknown case, 409 for a decision the
case's state does not allow (with that `state`) or a key reused with another body.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field

from evidence.decisions import (
    KEY_REUSED,
    UNKNOWN_CASE,
    Decision,
    Refused,
    Source,
    allowed_events,
    apply_decision,
)
from ingest.decisions import CASE_ID, MAX_KEY
from streetwatch.console.errors import Refusal
from streetwatch.console.security import Principal, require
from streetwatch.users import Role

router = APIRouter()
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]


class DecisionResult(BaseModel):
    case_id: str
    event: str
    state: str
    """The case's state after the decision."""
    review: str | None
    """The box review: pending, confirmed or rejected (None: the rule asks for none)."""
    at: str
    key: str
    source: str
    by: str | None
    rule_id: str
    from_: str = Field(alias="from")
    """The case's state before the decision."""
    replay: bool
    """True: this key was applied before; this is that first result and nothing changed."""


class RefusedState(BaseModel):
    detail: str
    state: str | None
    """The case's current state, when it has one."""


class DecisionMetrics:
    """Per app (its registry): decisions applied by source and event, refused by reason,
    and box-review rejections per rule (the reviewers' false positives)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter(
            "streetwatch_decisions",
            "Decisions applied to cases over the console's HTTP API",
            ["source", "event"],
            registry=registry,
        )
        self.refused = Counter(
            "streetwatch_decisions_refused",
            "Decisions refused over the console's HTTP API, by reason",
            ["reason"],
            registry=registry,
        )
        self.review_rejections = Counter(
            "streetwatch_review_rejections",
            "Cases an operator rejected in the box review (false positives), per rule",
            ["rule"],
            registry=registry,
        )


_metrics_lock = threading.Lock()


def _metrics(request: Request) -> DecisionMetrics:
    state = request.app.state
    with _metrics_lock:
        metrics = getattr(state, "decision_metrics", None)
        if metrics is None:
            metrics = state.decision_metrics = DecisionMetrics(state.ctx.registry)
    return metrics


@router.post(
    "/api/v1/cases/{case_id}/events",
    tags=["cases"],
    status_code=201,
    response_model=DecisionResult,
    responses={
        200: {"model": DecisionResult, "description": "a replay: the key's first result"},
        400: {"model": Refusal, "description": "no Idempotency-Key header"},
        403: {"model": Refusal, "description": "operator role needed"},
        404: {"model": Refusal, "description": "no such case"},
        409: {
            "model": RefusedState,
            "description": "the case's state does not allow this decision (its state is "
            "given), or the key was used for another request",
        },
    },
)
def post_decision(
    request: Request,
    case_id: str,
    decision: Decision,
    who: Operator,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_KEY)] = None,
) -> Any:
    """Record a decision about a case: the case system's (`confirmed`, `rejected`, `notified`
    with `how`, `rectified`, `closed`, `reopened`) or, for a rule with `review: required`, the
    box review (`confirmed`/`rejected` while the case waits for it). Send a fresh
    `Idempotency-Key` per decision and the same one when retrying it."""
    if not idempotency_key:
        raise HTTPException(400, "send an Idempotency-Key header (a fresh one per decision)")
    if not CASE_ID.fullmatch(case_id):
        raise HTTPException(404, "no such case")
    source: Source = "console" if who.via == "session" else "http"
    if who.via == "session" or decision.by is None:
        decision = decision.model_copy(update={"by": who.name})
    metrics = _metrics(request)
    try:
        applied = apply_decision(
            request.app.state.ctx.cases, case_id, decision, idempotency_key, source
        )
    except Refused as refused:
        metrics.refused.labels(refused.reason).inc()
        if refused.reason == UNKNOWN_CASE:
            raise HTTPException(404, "no such case") from None
        body: dict[str, Any] = {"detail": refused.detail, "state": refused.state}
        if refused.reason == KEY_REUSED:
            body["state"] = None
        return JSONResponse(body, status_code=409)
    result = applied.result
    if not applied.replay:
        metrics.applied.labels(source, result["event"]).inc()
        if result["event"] == "rejected" and result.get("review") == "rejected":
            metrics.review_rejections.labels(result["rule_id"]).inc()
    out = DecisionResult(**result, replay=applied.replay)
    return JSONResponse(
        out.model_dump(mode="json", by_alias=True), status_code=200 if applied.replay else 201
    )


LABELS = {
    "confirmed": "confirm",
    "rejected": "reject",
    "notified": "notified",
    "rectified": "rectified",
    "closed": "close",
    "reopened": "reopen",
}
HOW = ("sms", "letter", "phone", "in person", "app")
"""How a party may be told (告知送达), offered for `notified`; the API takes any text."""


def decision_panel(request: Request, case_id: str) -> dict[str, Any]:
    """What the case page's decisions panel needs: the buttons the case's state allows (none
    for a viewer), and whether the case waits for the box review."""
    who = getattr(request.state, "principal", None)
    case = request.app.state.ctx.cases.find(case_id)
    if case is None:
        return {"decisions": [], "review": None, "how_options": HOW}
    allowed = allowed_events(case.state, case.review)
    operator = who is not None and who.allows(Role.OPERATOR)
    return {
        "decisions": [(event, LABELS[event]) for event in allowed] if operator else [],
        "review": case.review,
        "how_options": HOW,
    }
