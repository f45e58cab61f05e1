"""Violation → case → package → evidence_complete, idempotent and resumable after a crash."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime

from evidence.builder import EvidenceBuilder, FrameProvider
from evidence.cases import Case, CaseStore, State
from evidence.escalation import escalation_levels
from evidence.followup import FollowUp, FollowUps
from evidence.keys import Signer
from evidence.retention import Retention, RetentionReport
from evidence.settings import evidence_paths
from ingest.config import SiteConfig
from ingest.diskspace import DiskGuard
from ingest.journal import Journal
from rules.clearance import Clearance
from rules.violation import Violation

log = logging.getLogger(__name__)


class EvidenceService:
    """Glue for `streetwatch run`: `handle(violation)` once its post-roll has been recorded
    (`EvidenceBuilder.ready_at`), `resume()` at start-up, `tick()` now and then."""

    def __init__(
        self,
        builder: EvidenceBuilder,
        store: CaseStore,
        retention: Retention | None = None,
        *,
        retention_every_s: float = 300.0,
        disk: DiskGuard | None = None,
    ) -> None:
        """`disk`: no package is started while the storage disk is below its free-space floor
        (DiskFull is raised and the case stays opened), rather than failing halfway."""
        self.builder = builder
        self.disk = disk
        self.store = store
        self.retention = retention
        self.retention_every_s = retention_every_s
        self._last_retention = float("-inf")
        self.followups = FollowUps(builder, store)
        """Clearances: `cleared` events and follow-up ("after") packages (evidence.followup)."""

    @classmethod
    def from_config(
        cls,
        config: SiteConfig,
        frames: FrameProvider | None,
        journal: Journal | None,
        disk: DiskGuard | None = None,
    ) -> EvidenceService:
        """Key (created on first run; refused when exposed), case store, builder, retention."""
        paths = evidence_paths(config)
        signer = Signer.load_or_create(paths.key)
        builder = EvidenceBuilder(config, signer, frames, journal, root=paths.root)
        store = CaseStore(paths.cases)
        settings = config.evidence
        retention = None
        if settings.quota_bytes is not None or settings.retention_days is not None:
            retention = Retention(
                paths.root,
                store,
                quota_bytes=settings.quota_bytes,
                retention_days=settings.retention_days,
            )
        return cls(builder, store, retention, disk=disk)

    def handle(self, violation: Violation, now: datetime | None = None) -> Case:
        case, _new = self.store.open(violation, now, case_id=self.builder.case_id(violation))
        if case.state is not State.OPENED:
            return case
        if self.disk is not None:
            self.disk.check("evidence")
        result = self.builder.build_result(violation)
        self.builder.ledger.recover()
        sha = hashlib.sha256((result.path / "manifest.json").read_bytes()).hexdigest()
        # review: required: the case waits for an operator's confirm or reject (decisions.py)
        review = {"review": "pending"} if violation.review_required else {}
        return self.store.transition(
            case.case_id,
            State.EVIDENCE_COMPLETE,
            datetime.now(UTC),
            {"package": str(result.path), "manifest_sha256": sha, **review},
            package=str(result.path),
            manifest_sha256=sha,
            **review,
        )

    def clear(self, clearance: Clearance) -> Case | None:
        """The engine saw a case's situation end: its `cleared` event, at once (durable); the
        after package follows from `follow_up` on the evidence thread."""
        return self.followups.record(clearance)

    def follow_up(self, case_id: str) -> FollowUp | None:
        """The after package of a cleared case (see `evidence.followup`), once."""
        if self.disk is not None:
            self.disk.check("evidence")
        result = self.followups.build(case_id)
        self.builder.ledger.recover()
        return result

    def resume(self) -> list[Case]:
        """Cases opened before a crash but without their evidence: build (or find) it now."""
        done = []
        for case in self.store.list([State.OPENED]):
            log.info("evidence: resuming case %s", case.case_id)
            done.append(self.handle(self.store.violation(case.case_id)))
        return done

    def tick(self, now: datetime | None = None) -> tuple[list[Case], RetentionReport | None]:
        """Escalate cases past their disposal deadline; enforce the quota every few minutes."""
        escalated = self.store.escalate_overdue(now, escalation_levels(self.store))
        for case in escalated:
            log.warning(
                "case %s (%s) passed its disposal deadline %s in state %s",
                case.case_id,
                case.rule_id,
                case.deadline,
                case.state.value,
            )
        report = None
        if self.retention is not None and (
            time.monotonic() - self._last_retention >= self.retention_every_s
        ):
            self._last_retention = time.monotonic()
            report = self.retention.enforce(now)
        return escalated, report
