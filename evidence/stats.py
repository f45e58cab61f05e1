"""The figures the field reports, from the case store: per rule and in total, cases opened per
day and month (active discovery), disposed by the box (`cleared`) vs by the case system
(`rectified`), disposal time p50/p90, the share disposed within the deadline, escalations,
repeats and reviewer rejections (false positives); and each merchant's offences.

Definitions (what `streetwatch cases stats` and the console's Figures card print):
- disposal time: from opening to the earlier of the box seeing the situation end
  (`cleared_at`) and the case system's `rectified` event;
- within deadline: of the cases with a deadline that were not rejected and are decided (disposed,
  or their deadline has passed), the share disposed at or before the deadline;
- days and months are the site's local calendar (`utc_offset_s`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from evidence.cases import CaseStore

_PER_CASE = """
WITH chosen AS (SELECT * FROM cases WHERE opened_at >= ? AND opened_at < ?),
ev AS (
    SELECT case_id,
           min(CASE WHEN event = 'rectified' THEN at END) AS rectified_at,
           sum(event = 'escalated') AS escalations,
           max(event = 'rejected') AS rejected
    FROM case_events WHERE case_id IN (SELECT case_id FROM chosen) GROUP BY case_id
)
SELECT c.rule_id, c.opened_at, c.deadline, c.cleared_at, ev.rectified_at,
       coalesce(ev.escalations, 0), c.repeat_of IS NOT NULL,
       coalesce(ev.rejected, 0) OR c.state = 'rejected',
       date(c.opened_at + ?, 'unixepoch'), strftime('%Y-%m', c.opened_at + ?, 'unixepoch')
FROM chosen c LEFT JOIN ev USING (case_id)
ORDER BY c.opened_at
"""


@dataclass(slots=True)
class Figures:
    """One rule's figures, or the total's (`rule_id` None)."""

    rule_id: str | None
    opened: int = 0
    per_day: dict[str, int] = field(default_factory=dict)
    per_month: dict[str, int] = field(default_factory=dict)
    cleared_by_box: int = 0
    rectified: int = 0
    disposed: int = 0
    disposal_p50_s: float | None = None
    disposal_p90_s: float | None = None
    with_deadline: int = 0
    """Cases with a deadline, not rejected, disposed or past it: the share's denominator."""
    within_deadline: int = 0
    within_deadline_share: float | None = None
    escalated_cases: int = 0
    escalations: int = 0
    repeats: int = 0
    rejected: int = 0
    _disposals: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_disposals")
        return out


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (a time some case actually took), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def case_stats(
    store: CaseStore,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    now: datetime | None = None,
    utc_offset_s: float = 0.0,
) -> dict[str, Any]:
    """`{since, until, total, rules: [...]}` over cases opened in [since, until)."""
    now = now or datetime.now(UTC)
    start = since.timestamp() if since else float("-inf")
    end = until.timestamp() if until else float("inf")
    with store.lock:
        rows = store.db.execute(
            _PER_CASE, (max(start, -1e18), min(end, 1e18), utc_offset_s, utc_offset_s)
        ).fetchall()
    total = Figures(None)
    rules: dict[str, Figures] = {}
    for row in rows:
        rule_id = row[0]
        figures = rules.setdefault(rule_id, Figures(rule_id))
        for f in (figures, total):
            _add(f, row, now.timestamp())
    out = []
    for f in (*(rules[k] for k in sorted(rules)), total):
        f.disposal_p50_s = percentile(f._disposals, 50)
        f.disposal_p90_s = percentile(f._disposals, 90)
        if f.with_deadline:
            f.within_deadline_share = round(f.within_deadline / f.with_deadline, 4)
        out.append(f.to_dict())
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "total": out[-1],
        "rules": out[:-1],
    }


def _add(f: Figures, row: tuple, now: float) -> None:
    _, opened, deadline, cleared, rectified, escalations, repeat, rejected, day, month = row
    f.opened += 1
    f.per_day[day] = f.per_day.get(day, 0) + 1
    f.per_month[month] = f.per_month.get(month, 0) + 1
    f.cleared_by_box += cleared is not None
    f.rectified += rectified is not None
    f.escalations += escalations
    f.escalated_cases += escalations > 0
    f.repeats += bool(repeat)
    f.rejected += bool(rejected)
    ends = [t for t in (cleared, rectified) if t is not None]
    disposed = min(ends) if ends else None
    if disposed is not None and not rejected:
        f.disposed += 1
        f._disposals.append(round(disposed - opened, 3))
    if deadline is not None and not rejected and (disposed is not None or now > deadline):
        f.with_deadline += 1
        f.within_deadline += disposed is not None and disposed <= deadline


def merchant_offences(
    store: CaseStore, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Cases per merchant (the violation's `party`) opened in [since, until), most first: how
    many, by rule, how many were rejected, escalated or repeats, the first and the last."""
    start = since.timestamp() if since else -1e18
    end = until.timestamp() if until else 1e18
    with store.lock:
        rows = store.db.execute(
            "SELECT json_extract(violation, '$.party') AS party, rule_id, count(*),"
            " sum(state = 'rejected'), sum(escalation_level > 0), sum(repeat_of IS NOT NULL),"
            " min(opened_at), max(opened_at)"
            " FROM cases WHERE opened_at >= ? AND opened_at < ? AND party IS NOT NULL"
            " GROUP BY party, rule_id",
            (start, end),
        ).fetchall()
    merchants: dict[str, dict[str, Any]] = {}
    for party, rule_id, count, rejected, escalated, repeats, first, last in rows:
        m = merchants.setdefault(
            party,
            {
                "merchant_id": party,
                "cases": 0,
                "by_rule": Counter(),
                "rejected": 0,
                "escalated": 0,
                "repeats": 0,
                "first": first,
                "last": last,
            },
        )
        m["cases"] += count
        m["by_rule"][rule_id] += count
        m["rejected"] += rejected
        m["escalated"] += escalated
        m["repeats"] += repeats
        m["first"] = min(m["first"], first)
        m["last"] = max(m["last"], last)
    out = []
    for m in merchants.values():
        m["offences"] = m["cases"] - m["rejected"]
        m["by_rule"] = dict(sorted(m["by_rule"].items()))
        m["first"] = datetime.fromtimestamp(m["first"], UTC).isoformat()
        m["last"] = datetime.fromtimestamp(m["last"], UTC).isoformat()
        out.append(m)
    return sorted(out, key=lambda m: (-m["offences"], m["merchant_id"]))


def merchant_cases(store: CaseStore, merchant_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """A merchant's cases, newest first (its history)."""
    with store.lock:
        ids = [
            row[0]
            for row in store.db.execute(
                "SELECT case_id FROM cases WHERE json_extract(violation, '$.party') = ?"
                " ORDER BY opened_at DESC LIMIT ?",
                (merchant_id, limit),
            )
        ]
    return [store.get(case_id).to_dict() for case_id in ids]
