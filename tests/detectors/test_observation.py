from datetime import UTC, datetime, timedelta

from detectors.observation import FrameRef, GeoPoint, Observation, ObservationKind


def _obs(**over) -> Observation:
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    fields = {
        "kind": ObservationKind.PRESENCE,
        "device_id": "cam-1",
        "subject": "bicycle",
        "subject_id": "17",
        "first_seen": start,
        "last_seen": start + timedelta(seconds=90),
        "zone_id": "sidewalk-east",
        "zone_kind": "sidewalk",
        "location": GeoPoint(121.4373, 31.1952),
        "frame": FrameRef("cam-1", 420, start, (1.0, 2.0, 30.5, 40.0), 0.82),
        "attributes": {"speed_kmh": 0.0},
    }
    fields.update(over)
    return Observation(**fields)


def test_round_trip_keeps_every_field():
    obs = _obs()
    assert Observation.from_dict(obs.to_dict()) == obs


def test_dwell_and_key_follow_the_situation_not_its_updates():
    first = _obs()
    later = _obs(last_seen=first.last_seen + timedelta(minutes=5))
    assert later.dwell_s == 390.0
    assert later.key == first.key
    assert _obs(subject_id="18").key != first.key
