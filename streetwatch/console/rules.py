"""The rules page of the console and its JSON API: every loaded rule with its live situations,
the last hot reload's result, and a backtest of one rule on the last hours of the run."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ingest.yamlsource import ConfigError
from rules.schema import Clause, LoadedRule, RuleSet, load_rules
from rules.situations import LiveSituation
from streetwatch.console.backtest import MAX_HOURS, Backtest, backtest
from streetwatch.console.security import Principal, principal, require
from streetwatch.console.templating import page
from streetwatch.users import Role

router = APIRouter()

MAX_SITUATIONS = 50
"""Per rule, the situations shown (those nearest to opening first); the rest are counted."""
MAX_OPENED = 500
"""Per backtest, the violations listed; the rest are counted."""
_PROBLEM = re.compile(r"^(?P<file>[^\n]*?):(?P<line>\d+): (?P<message>.*)$", re.DOTALL)
_backtesting = threading.Lock()
"""One backtest at a time: the box has few cores and the live pipeline comes first."""


class Situation(BaseModel):
    subject: str
    subject_id: str
    zone: str | None
    device: str
    since: datetime
    """When the subject arrived (event time)."""
    last_seen: datetime
    dwell_s: float
    """How long it has been there so far."""
    needed_s: float
    """The rule's dwell (its clause's, for a rule of several clauses)."""
    progress: float = Field(ge=0, le=1)
    """dwell_s / needed_s, at most 1: for a progress bar."""
    opened: bool
    """The rule has fired for it (a case is open, or the cooldown held it back)."""
    clause: int
    count: int


class RuleView(BaseModel):
    id: str
    name: str
    category: str
    severity: str
    file: str
    """The rule file, relative to the rules folder."""
    line: int | None
    condition: str
    """The condition in words."""
    dwell_s: float
    """The longest dwell of its clauses."""
    schedule: str
    schedule_active: bool
    cooldown_s: float
    dedup: str
    situations: list[Situation]
    situations_total: int


class Problem(BaseModel):
    text: str
    file: str | None
    """Relative to the rules folder when inside it."""
    line: int | None
    message: str


class Reload(BaseModel):
    ok: bool
    at: datetime | None
    rules: int | None
    """How many rules run since it (the previous ones when it failed)."""
    problems: list[Problem]


class RulesView(BaseModel):
    rules_dir: str | None
    running: bool
    """A pipeline is running: situations are live and reloads are reported."""
    event_time: datetime | None
    """How far the engine's event time has come."""
    reload: Reload | None
    rules: list[RuleView]


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: float = Field(1.0, gt=0, le=MAX_HOURS)
    """How far back from now to replay."""
    sensors: Literal["recorded", "readings"] = "recorded"
    """Replay the observations as the run's detectors made them, or re-run the sensor
    detectors on the readings (cold: without the live detectors' state)."""


class Opened(BaseModel):
    violation_id: str
    opened_at: datetime
    subject: str
    subject_id: str
    zone: str | None
    devices: list[str]
    situation: str


class BacktestResult(BaseModel):
    rule_id: str
    source: Literal["recording", "journal"]
    since: datetime
    until: datetime
    items: int
    """Readings and observations replayed."""
    readings: int
    observations: int
    truncated: bool
    """The window held more than a backtest may replay: only its newest part was."""
    opened: list[Opened]
    opened_total: int
    before_window: int
    """Situations in the window that had already met the rule before it began."""
    bad_lines: int
    elapsed_s: float


@router.get("/rules", include_in_schema=False)
def rules_page(request: Request) -> HTMLResponse:
    who = principal(request)
    return page(
        request,
        "rules.html",
        "rules",
        max_hours=MAX_HOURS,
        can_backtest=who.allows(Role.OPERATOR),
        rules_dir=request.app.state.ctx.rules_dir,
    )


@router.get("/api/v1/rules", tags=["rules"])
def list_rules(request: Request, who: Annotated[Principal, Depends(principal)]) -> RulesView:
    """Every loaded rule with its live situations, and the last rule reload's result."""
    ctx = request.app.state.ctx
    pipeline = ctx.pipeline
    rules_dir: Path | None = ctx.rules_dir
    situations: dict[str, list[LiveSituation]] = {}
    event_time = None
    reload = None
    if pipeline is not None:
        engine = pipeline.engine
        rule_set: RuleSet = engine.rules
        for live in engine.live_situations():
            situations.setdefault(live.rule_id, []).append(live)
        event_time = engine.watermark
        reload = _reload(dict(pipeline.last_reload), rules_dir)
    else:
        rule_set = _rules_on_disk(ctx)
    now = datetime.now(UTC)
    views = [_rule_view(r, situations.get(r.id, []), rules_dir, now) for r in rule_set.rules]
    return RulesView(
        rules_dir=None if rules_dir is None else str(rules_dir),
        running=pipeline is not None,
        event_time=event_time,
        reload=reload,
        rules=views,
    )


@router.post("/api/v1/rules/{rule_id}/backtest", tags=["rules"])
async def backtest_rule(
    request: Request,
    rule_id: str,
    body: BacktestRequest,
    who: Annotated[Principal, Depends(require(Role.OPERATOR))],
) -> BacktestResult:
    """What this rule would have opened in the last `hours`: `streetwatch rules replay` on the
    run's recording (`run --record`), else on its journal; bounded in hours and items, one at a
    time (429 while another runs)."""
    ctx = request.app.state.ctx
    pipeline = ctx.pipeline
    rule_set = pipeline.engine.rules if pipeline is not None else _rules_on_disk(ctx)
    rule = rule_set.get(rule_id)
    if rule is None:
        raise HTTPException(404, "no loaded rule has that id")
    recording, journal = _sources(ctx)
    if recording is None and journal is None:
        raise HTTPException(409, "nothing to replay: this console has no run journal or recording")
    config = pipeline.config if pipeline is not None else ctx.config
    if not _backtesting.acquire(blocking=False):
        raise HTTPException(429, "another backtest is running: try again when it has finished")
    try:
        result: Backtest = await run_in_threadpool(
            backtest,
            rule,
            config,
            body.hours,
            recording=recording,
            journal=journal,
            sensors=body.sensors,
            tolerance_s=pipeline.engine.tolerance_s if pipeline is not None else 10.0,
        )
    finally:
        _backtesting.release()
    return _result_view(rule.id, result)


def _sources(ctx: Any) -> tuple[Path | None, Path | None]:
    """The run's recording (when it records), else its journal (when there is one)."""
    pipeline = ctx.pipeline
    if pipeline is not None:
        record = pipeline.options.record
        if record is not None and Path(record).is_file():
            return Path(record), None
        return None, Path(pipeline.journal.path)
    journal = ctx.config.storage.journal
    if journal is not None and Path(journal).is_file():
        return None, Path(journal)
    return None, None


def _rules_on_disk(ctx: Any) -> RuleSet:
    """Without a running pipeline: the rules folder as it stands (nothing when unreadable)."""
    if ctx.rules_dir is None:
        return RuleSet(())
    try:
        return load_rules(ctx.rules_dir, ctx.config)
    except (ConfigError, OSError):
        return RuleSet(())


def _relative(file: str, rules_dir: Path | None) -> str:
    """A rule file's name as the operator knows it: relative to the rules folder."""
    if rules_dir is None:
        return file
    base = rules_dir.resolve()
    if base.is_file():  # `run -r one-file.yaml`
        base = base.parent
    try:
        return str(Path(file).resolve().relative_to(base))
    except (ValueError, OSError):
        return file


def _reload(last: dict[str, Any], rules_dir: Path | None) -> Reload:
    problems = []
    for text in last.get("problems") or []:
        text = str(text)
        match = _PROBLEM.match(text)
        if match is None:
            problems.append(Problem(text=text, file=None, line=None, message=text))
            continue
        problems.append(
            Problem(
                text=text,
                file=_relative(match["file"], rules_dir),
                line=int(match["line"]),
                message=match["message"],
            )
        )
    at = last.get("at")
    return Reload(
        ok=bool(last.get("ok")),
        at=None if at is None else datetime.fromisoformat(str(at)),
        rules=last.get("rules"),
        problems=problems,
    )


def _rule_view(
    loaded: LoadedRule, live: list[LiveSituation], rules_dir: Path | None, now: datetime
) -> RuleView:
    rule = loaded.rule
    clauses = rule.condition.clauses()
    situations = sorted(live, key=lambda s: (not s.fired, -_progress(s), s.subject_id))
    return RuleView(
        id=rule.id,
        name=rule.name,
        category=rule.category,
        severity=rule.severity.value,
        file=_relative(loaded.source, rules_dir),
        line=loaded.line,
        condition=condition_text(rule.condition),
        dwell_s=max(c.dwell for c in clauses),
        schedule=_schedule_text(loaded),
        schedule_active=loaded.schedule is None or loaded.schedule.active(now),
        cooldown_s=rule.cooldown,
        dedup=rule.dedup.value,
        situations=[_situation_view(s) for s in situations[:MAX_SITUATIONS]],
        situations_total=len(live),
    )


def _progress(live: LiveSituation) -> float:
    if live.fired or live.needed_s <= 0:
        return 1.0
    return min(1.0, live.dwell_s / live.needed_s)


def _situation_view(live: LiveSituation) -> Situation:
    return Situation(
        subject=live.subject,
        subject_id=live.subject_id,
        zone=live.zone_id,
        device=live.device_id,
        since=datetime.fromtimestamp(live.first_seen, UTC),
        last_seen=datetime.fromtimestamp(live.last_seen, UTC),
        dwell_s=round(live.dwell_s, 1),
        needed_s=live.needed_s,
        progress=_progress(live),
        opened=live.fired,
        clause=live.clause,
        count=live.count,
    )


def duration_text(seconds: float) -> str:
    """8s, 5m, 1h30m: as rule files write durations."""
    whole = round(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def _clause_text(clause: Clause) -> str:
    words = [clause.kind.value]
    if clause.subject:
        words.append(f"of {', '.join(clause.subject)}")
    if clause.state:
        words.append(f"({', '.join(clause.state)})")
    if clause.zone:
        words.append(f"in {', '.join(clause.zone)}")
    if clause.zone_kind:
        words.append(f"in a {' or '.join(clause.zone_kind)} zone")
    if clause.device:
        words.append(f"on {', '.join(clause.device)}")
    if clause.min_count > 1:
        words.append(f"{clause.min_count} at once")
    if clause.dwell:
        words.append(f"for {duration_text(clause.dwell)}")
    return " ".join(words)


def condition_text(condition: Any) -> str:
    """A rule's condition in words, e.g. `presence of bicycle in a sidewalk zone for 5m`."""
    clauses = [_clause_text(c) for c in condition.clauses()]
    if condition.all is not None:
        return " AND ".join(clauses) + f" (within {duration_text(condition.within)})"
    return " OR ".join(clauses)


def _schedule_text(loaded: LoadedRule) -> str:
    schedule = loaded.rule.schedule
    if schedule is None:
        return "always"
    days = schedule.weekdays
    text = ", ".join(schedule.windows)
    if len(days) < 7:
        text += " on " + " ".join(days)
    if schedule.timezone:
        text += f" ({schedule.timezone})"
    return text


def _result_view(rule_id: str, result: Backtest) -> BacktestResult:
    return BacktestResult(
        rule_id=rule_id,
        source=result.source,
        since=result.since,
        until=result.until,
        items=result.items,
        readings=result.readings,
        observations=result.observations,
        truncated=result.truncated,
        opened=[
            Opened(
                violation_id=v.violation_id,
                opened_at=v.opened_at,
                subject=v.subject,
                subject_id=v.subject_id,
                zone=v.zone_id,
                devices=list(v.devices),
                situation=v.situation,
            )
            for v in result.opened[:MAX_OPENED]
        ],
        opened_total=len(result.opened),
        before_window=result.before_window,
        bad_lines=result.bad_lines,
        elapsed_s=round(result.elapsed_s, 3),
    )
