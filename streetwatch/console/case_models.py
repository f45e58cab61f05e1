"""The case pages' JSON shapes (pydantic), as the OpenAPI describes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

Status = Literal["ok", "bad", "unknown"]


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
