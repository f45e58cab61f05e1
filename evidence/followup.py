"""Clearances → `cleared` events and follow-up ("after") evidence packages; repeats.

The rules engine reports when an opened violation's situation ends (`rules.clearance`). The box
records that in two steps, so that a restart loses nothing:

1. `record(clearance)`, on the analysis thread, right away: `CaseStore.clear` (durable; once
   per case), the `cleared` event carrying the time to disposal and the clearance itself.
2. `build(case_id)`, on the evidence thread, for every cleared case whose own package exists
   and that has no follow-up yet (`pending()`): an "after" package, hashed, signed and chained
   by the same ledger as every package, naming the original case and its manifest SHA-256, then
   a `follow_up` event with its path and hash. A camera's after snapshot is taken from its ring
   buffer once the rule's post-roll has passed the clearance (`ready`).

Layout: `<root>/<YYYY-MM-DD>/<case_id>-after/` (the date of the case's opening, like the
original), so every package stays one folder of a date folder and `evidence verify` checks the
follow-ups with the rest of the chain. Its manifest has `kind: follow_up`, the original's
`case_id`, and `follows: {case_id, manifest_sha256, seq}`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evidence.blur import blur_bystanders
from evidence.builder import _CAMERA_KINDS, EvidenceBuilder, _json, _nearest_decodable
from evidence.cases import CLEARED, Case, CaseStore
from evidence.fsutil import write_file
from evidence.media import Overlay, annotate, encode_jpeg
from evidence.metric_plot import metric_files
from evidence.package import (
    AFTER_SUFFIX,
    FOLLOW_UP,
    FORMAT,
    both_times,
    case_id_of,
    package_dir,
)
from evidence.series import read_history
from rules.clearance import Clearance
from rules.violation import Violation

log = logging.getLogger(__name__)

FOLLOW_UP_EVENT = "follow_up"
"""Case event recording a built follow-up package (package path, manifest SHA-256, seq)."""


@dataclass(frozen=True, slots=True)
class FollowUp:
    case_id: str
    path: Path
    seq: int
    manifest_sha256: str
    created: bool


def case_id_of_clearance(clearance: Clearance) -> str:
    return case_id_of(clearance.violation_id, clearance.opened_at)


class FollowUps:
    """Clearances of one box's cases: `record` them, then `build` their after packages."""

    def __init__(self, builder: EvidenceBuilder, store: CaseStore) -> None:
        self.builder = builder
        self.store = store

    # ---- analysis thread --------------------------------------------------------------------

    def record(self, clearance: Clearance) -> Case | None:
        """The case's `cleared` event (once); None when it was cleared already, is unknown (its
        violation opened no case), or was rejected or closed."""
        case_id = case_id_of_clearance(clearance)
        case = self.store.clear(
            case_id,
            clearance.cleared_at,
            {"how": clearance.how, "clearance": clearance.to_dict()},
        )
        if case is not None:
            log.info(
                "case %s cleared: %s %s after %.0f s",
                case_id,
                clearance.rule_id,
                clearance.how,
                case.disposal_s or 0.0,
            )
        return case

    def link_repeat(self, case: Case, violation: Violation) -> str | None:
        """A situation that comes back within the rule's `repeat_within` after the box cleared
        the newest earlier case of the same rule in the same zone is a repeat of that case.
        Returns the earlier case id when linked now."""
        window = violation.repeat_within
        if window is None:
            return None
        back = violation.window_start
        for earlier in self.store.recently_cleared(
            violation.rule_id, back - window, violation.zone_id
        ):
            cleared = earlier.cleared_at
            if earlier.case_id == case.case_id or cleared is None or cleared > violation.opened_at:
                continue
            gap = max(0.0, (back - cleared).total_seconds())
            data = {"cleared_at": cleared.isoformat(), "back_after_s": round(gap, 3)}
            if self.store.mark_repeat(case.case_id, earlier.case_id, data):
                log.info("case %s repeats case %s (back after %.0f s)", case.case_id, earlier, gap)
                return earlier.case_id
            return None
        return None

    # ---- evidence thread --------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Cleared cases whose own package exists but whose follow-up was not recorded yet,
        oldest clearance first."""
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT c.case_id FROM cases c WHERE c.cleared_at IS NOT NULL"
                " AND c.manifest_sha256 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM case_events e"
                " WHERE e.case_id = c.case_id AND e.event = ?) ORDER BY c.cleared_at",
                (FOLLOW_UP_EVENT,),
            ).fetchall()
        return [row[0] for row in rows]

    def clearance_of(self, case_id: str) -> Clearance | None:
        """The clearance recorded in the case's `cleared` event."""
        for event in self.store.events(case_id):
            if event.event == CLEARED and "clearance" in event.data:
                return Clearance.from_dict(event.data["clearance"])
        return None

    def ready(self, case_id: str, now: datetime | None = None) -> bool:
        """A camera case waits for its post-roll after the clearance (the after snapshot)."""
        case = self.store.get(case_id)
        if case.cleared_at is None:
            return False
        violation = self.store.violation(case_id)
        if not self._cameras(violation):
            return True
        due = case.cleared_at + timedelta(seconds=violation.evidence.post_s)
        return (now or datetime.now(UTC)) >= due

    def build(self, case_id: str) -> FollowUp | None:
        """The after package of a cleared case (idempotent: a built one is found, not rebuilt)
        and its `follow_up` event (once). None when the case is not cleared or not packaged."""
        case = self.store.get(case_id)
        if case.cleared_at is None or case.manifest_sha256 is None:
            return None
        recorded = self._recorded(case_id)
        if recorded is not None:
            return recorded
        violation = self.store.violation(case_id)
        clearance = self.clearance_of(case_id)
        ledger = self.builder.ledger
        final = package_dir(ledger.root, case_id + AFTER_SUFFIX, violation.opened_at)
        staging = ledger.new_staging(case_id + AFTER_SUFFIX)
        try:
            files, facts = self._collect(violation, case, clearance, staging)
            committed = ledger.commit(
                staging,
                final,
                lambda seq, prev: self._manifest(
                    violation, case, clearance, seq, prev, files, facts
                ),
                self.builder.signer,
            )
        except BaseException:
            ledger.discard(staging)
            raise
        sha = hashlib.sha256((committed.path / "manifest.json").read_bytes()).hexdigest()
        result = FollowUp(case_id, committed.path, committed.seq, sha, committed.created)
        data = {
            "package": str(committed.path),
            "manifest_sha256": sha,
            "seq": committed.seq,
            "follows": {"case_id": case_id, "manifest_sha256": case.manifest_sha256},
        }
        with self.store.lock:  # one row in autocommit, as `CaseStore.audit` writes its rows
            if self._recorded(case_id) is None:
                self.store._event(case_id, FOLLOW_UP_EVENT, datetime.now(UTC).timestamp(), data)
        self.builder._count("follow_ups_built" if committed.created else "follow_ups_found")
        return result

    def _recorded(self, case_id: str) -> FollowUp | None:
        for event in self.store.events(case_id):
            if event.event == FOLLOW_UP_EVENT:
                d = event.data
                return FollowUp(case_id, Path(d["package"]), d["seq"], d["manifest_sha256"], False)
        return None

    # ---- the package ------------------------------------------------------------------------

    def _cameras(self, violation: Violation) -> list[Any]:
        devices = [self.builder.config.device(d) for d in violation.devices]
        return [d for d in devices if d is not None and d.kind in _CAMERA_KINDS]

    def _collect(
        self, v: Violation, case: Case, clearance: Clearance | None, staging: Path
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        files: list[dict[str, Any]] = []
        facts: dict[str, Any] = {"cameras": {}, "problems": []}
        cleared = case.cleared_at
        assert cleared is not None
        post = timedelta(seconds=v.evidence.post_s)

        def put(rel: str, data: bytes, role: str) -> None:
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file(path, data)
            digest = hashlib.sha256(data).hexdigest()
            files.append({"path": rel, "sha256": digest, "size": len(data), "role": role})

        if clearance is not None:
            put("data/clearance.json", _json(clearance.to_dict()), "clearance")
        for camera in self._cameras(v):
            end = cleared + post
            frames = self.builder.camera_frames(camera.id, cleared, end, [end])
            # the latest frame of the post-roll: the view once the subject has gone
            found = _nearest_decodable(frames, cleared + post) if frames else None
            if found is None:
                facts["problems"].append(f"{camera.id}: no frame after the clearance in the ring")
                continue
            frame, image = found
            zone = next((z for z in camera.zones if z.id == v.zone_id), None)
            overlay = Overlay(
                device_id=camera.id,
                ts=frame.ts,
                tz=self.builder.tz,
                boxes=[],
                zone=zone.polygon if zone else None,
                zone_label=f"{zone.id} ({zone.kind.value})" if zone else "",
                caption=f"{v.rule_id}: after",
            )
            detector = self.builder.face_detector
            annotated = image if detector is None else blur_bystanders(image, detector, [])[0]
            base = f"media/{camera.id}"
            put(f"{base}/after.raw.jpg", frame.jpeg, "snapshot_raw:after")
            put(
                f"{base}/after.annotated.jpg",
                encode_jpeg(annotate(annotated, overlay)),
                "snapshot:after",
            )
            facts["cameras"][camera.id] = {
                "snapshots": {
                    "after": {
                        "frame_index": frame.index,
                        "at": both_times(frame.ts, self.builder.tz),
                        "faces_blurred": detector is not None,
                    }
                }
            }
        sensors = [
            d
            for d in v.devices
            if (dev := self.builder.config.device(d)) is not None and dev.kind not in _CAMERA_KINDS
        ]
        journal = self.builder.journal
        if sensors and journal is not None:
            shown = v.observations
            if clearance is not None and clearance.observation is not None:
                shown = (*shown, clearance.observation)
            history = read_history(
                journal, sensors, v.opened_at, cleared + post, shown, self.builder.tz
            )
            for rel, data, role in history.files():
                put(rel, data, role)
            if history.metric_devices:
                # the whole episode, from its start to the clearance, not just its end
                episode = journal.readings_between(sensors, v.window_start, cleared + post)
                for rel, data, role in metric_files(episode, shown, self.builder.tz, cleared):
                    put(rel, data, role)
            facts["sensor_readings"] = history.readings
        return files, facts

    def _manifest(
        self,
        v: Violation,
        case: Case,
        clearance: Clearance | None,
        seq: int,
        prev: str,
        files: list[dict[str, Any]],
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        tz = self.builder.tz
        site = self.builder.config.site
        cleared = case.cleared_at
        assert cleared is not None
        deadline = v.deadline
        return {
            "format": FORMAT,
            "kind": FOLLOW_UP,
            "case_id": case.case_id,
            "violation_id": v.violation_id,
            "seq": seq,
            "prev_manifest_sha256": prev,
            "follows": {
                "case_id": case.case_id,
                "manifest_sha256": case.manifest_sha256,
                "package": None if case.package is None else Path(case.package).name,
            },
            "created_at": both_times(datetime.now(UTC), tz),
            "site": {"id": site.id, "name": site.name, "timezone": site.timezone},
            "rule": {"id": v.rule_id, "name": v.rule_name, "category": v.category},
            "category": v.category,
            "situation": v.situation,
            "subject": {"kind": v.subject, "id": v.subject_id},
            "zone": {"id": v.zone_id, "kind": v.zone_kind},
            "devices": list(v.devices),
            "location": self.builder._location(v),
            "time_window": {
                "opened_at": both_times(v.opened_at, tz),
                "cleared_at": both_times(cleared, tz),
                "disposal_s": case.disposal_s,
                "deadline": None if deadline is None else both_times(deadline, tz),
                "within_deadline": None if deadline is None else cleared <= deadline,
                "post_s": v.evidence.post_s,
            },
            "clearance": None
            if clearance is None
            else {"how": clearance.how, "observation": clearance.shown_by()},
            "media": facts["cameras"],
            "problems": facts["problems"],
            "files": sorted(files, key=lambda f: f["path"]),
            "signer": {
                "algorithm": "Ed25519",
                "key_id": self.builder.signer.key_id,
                "public_key": self.builder.signer.verifier.public_b64,
            },
        }
