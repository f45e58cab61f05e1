from datetime import UTC, datetime, timedelta

from detectors.observation import GeoPoint, Observation, ObservationKind
from rules.violation import EvidenceSpec, Violation


def _violation(**over) -> Violation:
    at = datetime(2026, 11, 23, 8, 15, tzinfo=UTC)
    obs = Observation(
        ObservationKind.OCCUPANCY, "mag-1", "bay", "fire-lane-1", at, at, state="occupied"
    )
    fields = {
        "rule_id": "fire-lane-car",
        "rule_name": "Car in a fire lane",
        "category": "消防通道/占用",
        "severity": "high",
        "site_id": "demo",
        "situation": "fire-lane-1",
        "opened_at": at,
        "window_start": at - timedelta(seconds=30),
        "window_end": at,
        "devices": ("mag-1",),
        "subject": "car",
        "subject_id": "fire-lane-1",
        "location": GeoPoint(121.437, 31.1954),
        "dispose_within": timedelta(minutes=15),
        "evidence": EvidenceSpec(pre_s=5.0),
        "thresholds": {"dwell_s": 60},
        "observations": (obs,),
    }
    fields.update(over)
    return Violation(**fields)


def test_round_trip_and_deadline():
    v = _violation()
    assert Violation.from_dict(v.to_dict()) == v
    assert v.deadline == v.opened_at + timedelta(minutes=15)


def test_id_is_deterministic_per_situation_and_opening():
    v = _violation()
    assert _violation().violation_id == v.violation_id
    assert _violation(situation="fire-lane-2").violation_id != v.violation_id
    assert _violation(opened_at=v.opened_at + timedelta(hours=1)).violation_id != v.violation_id
