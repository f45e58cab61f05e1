from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detectors.zones import PixelZones, footprint
from ingest.config import Zone, ZoneKind

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SQUARE = Zone(
    id="z", kind=ZoneKind.SIDEWALK, polygon=[(100, 100), (200, 100), (200, 200), (100, 200)]
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_footprint_is_the_bottom_centre() -> None:
    assert footprint((10, 20, 30, 80)) == (20, 80)


def test_enter_stay_and_leave_after_exit_time() -> None:
    zones = PixelZones([SQUARE], margin_px=10, exit_s=1.0)
    assert zones.update({1: (50, 150)}, at(0)).entered == []
    events = zones.update({1: (150, 150)}, at(1))
    assert [v.track_id for v in events.entered] == [1]
    assert zones.update({1: (300, 150)}, at(2)).left == []  # out, but not for long yet
    events = zones.update({1: (300, 150)}, at(3))
    assert [(v.track_id, v.entered, v.last_inside) for v in events.left] == [(1, at(1), at(1))]


def test_jitter_at_the_edge_does_not_restart_dwell() -> None:
    zones = PixelZones([SQUARE], margin_px=10, exit_s=1.0)
    zones.update({7: (150, 199)}, at(0))
    for step in range(1, 40):
        x = 205 if step % 2 else 198  # across the edge, within the margin
        events = zones.update({7: (x, 150)}, at(step * 0.2))
        assert events.entered == [] and events.left == []
    visit = zones.visits[(7, "z")]
    assert visit.entered == at(0) and visit.last_inside == at(39 * 0.2)


def test_brief_excursions_beyond_the_margin_shorter_than_exit_time_are_forgiven() -> None:
    zones = PixelZones([SQUARE], margin_px=5, exit_s=1.0)
    zones.update({3: (150, 150)}, at(0))
    zones.update({3: (260, 150)}, at(0.5))
    assert zones.update({3: (150, 150)}, at(0.9)).left == []
    assert zones.update({3: (260, 150)}, at(1.5)).left == []
    assert zones.visits[(3, "z")].entered == at(0)


def test_ending_a_track_ends_its_visits() -> None:
    zones = PixelZones([SQUARE], margin_px=5, exit_s=1.0)
    zones.update({3: (150, 150), 4: (10, 10)}, at(0))
    assert [v.zone.id for v in zones.end_track(3)] == ["z"]
    assert zones.visits == {}
