"""The left-object detector and stall grouping on small drawn scenes: a textured pavement
where a box is put down and taken in, light that changes everywhere, a view that shifts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from detectors.camera import subject_id
from detectors.leftobject import ID_BASE, LeftObjectDetector, LeftUpdate
from detectors.stalls import STALL_ID_BASE, StallGrouper, group
from ingest.config import Zone
from ingest.config.camera_extras import LeftObject

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
FPS = 5
SIDEWALK = Zone(id="walk", kind="sidewalk", polygon=[(0, 0), (640, 0), (640, 360), (0, 360)])
CRATE = (300, 200, 360, 250)


def pavement(seed: int = 1) -> np.ndarray:
    """Grey tiles with texture, 640×360."""
    rng = np.random.default_rng(seed)
    image = np.full((360, 640, 3), 120, np.uint8)
    image += rng.integers(0, 30, (360, 640, 1), dtype=np.uint8)
    image[::40] = 90
    image[:, ::40] = 90
    return cv2.GaussianBlur(image, (3, 3), 0)


def with_crate(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    x1, y1, x2, y2 = CRATE
    out[y1:y2, x1:x2] = (40, 90, 200)
    return out


def feed(
    detector: LeftObjectDetector, frames: list[np.ndarray], start_s: float = 0.0
) -> list[LeftUpdate]:
    return [
        detector.update(frame, T0 + timedelta(seconds=start_s + i / FPS), [])
        for i, frame in enumerate(frames)
    ]


def test_a_crate_put_down_becomes_a_left_object_after_settling_and_ends_when_taken_in() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=3.0, exit_s=1.0), [SIDEWALK])
    scene = pavement()
    updates = feed(detector, [scene] * (5 * FPS) + [with_crate(scene)] * (6 * FPS))
    first = next(i for i, u in enumerate(updates) if u.active)
    assert 5 * FPS + 3 * FPS <= first <= 5 * FPS + 5 * FPS  # settle time + the still filter
    [region] = updates[-1].active
    assert region.object_id == ID_BASE
    assert region.first_seen >= T0 + timedelta(seconds=5 - 0.001)  # float32 evidence
    x1, _, _, y2 = region.box
    assert abs(x1 - CRATE[0]) <= 4 and abs(y2 - CRATE[3]) <= 4
    later = feed(detector, [scene] * (3 * FPS), start_s=11.0)
    ended = [r for u in later for r in u.ended]
    assert [r.object_id for r in ended] == [ID_BASE]
    assert later[-1].active == []


def test_a_crate_under_a_tracked_person_gathers_nothing_until_they_leave() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=2.0, cover_hold_s=1.0), [SIDEWALK])
    scene, crate = pavement(), with_crate(pavement())
    person = (280.0, 100.0, 380.0, 260.0)
    feed(detector, [scene] * (4 * FPS))
    for i in range(10 * FPS):
        ts = T0 + timedelta(seconds=4 + i / FPS)
        assert detector.update(crate, ts, [person]).active == []
    updates = feed(detector, [crate] * (5 * FPS), start_s=14.0)
    first = next(i for i, u in enumerate(updates) if u.active)
    assert first >= 2 * FPS  # not before the settle time after the person left


def test_light_that_changes_everywhere_makes_no_left_object() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=2.0), [SIDEWALK])
    scene = pavement()
    frames = [scene] * (4 * FPS)
    frames += [cv2.convertScaleAbs(scene, alpha=1.0 - 0.02 * i) for i in range(10 * FPS)]
    frames += [cv2.convertScaleAbs(scene, alpha=0.55)] * (5 * FPS)  # a cloud, then it stays
    updates = feed(detector, frames)
    assert all(u.active == [] for u in updates)


@pytest.mark.xfail(
    strict=True,
    reason="known limit: where a pool of light fades out (ratio 1.05-1.09, too small for the "
    "light test, above the threshold on bright tiles) the tile joints cut the toe into regions "
    "that settle and count as goods for a few seconds",
)
def test_a_lamp_lighting_part_of_the_scene_makes_no_left_object() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=2.0), [SIDEWALK])
    scene = pavement()
    ramp = np.clip((450 - np.arange(640)) / 100, 0, 1)  # a pool of light fading to the right
    lit = np.clip(scene * (1 + 0.6 * ramp)[None, :, None], 0, 255).astype(np.uint8)
    updates = feed(detector, [scene] * (4 * FPS) + [lit] * (8 * FPS))
    assert all(u.active == [] for u in updates)


def test_a_light_switched_everywhere_relearns() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=2.0), [SIDEWALK])
    scene = pavement()
    night = np.full_like(scene, 20)
    night[::40] = 60
    updates = feed(detector, [scene] * (4 * FPS) + [night] * (5 * FPS))
    # a regular grid lit anew is ambiguous to phase correlation: either reason relearns
    assert len([u.relearned for u in updates if u.relearned]) == 1
    assert all(u.active == [] for u in updates)


def test_a_view_that_drifts_relearns_and_reports_nothing() -> None:
    detector = LeftObjectDetector(LeftObject(settle_s=2.0), [SIDEWALK])
    wide = cv2.resize(pavement(), (800, 450))
    frames = [wide[40 : 40 + 360, 40 + i // 2 : 40 + i // 2 + 640] for i in range(15 * FPS)]
    updates = feed(detector, frames)
    assert "camera_moved" in {u.relearned for u in updates}
    assert all(u.active == [] for u in updates)


def test_stall_furniture_standing_together_is_one_stall_that_keeps_its_id() -> None:
    table, umbrella, chair = (100, 200, 180, 260), (90, 120, 190, 210), (400, 220, 440, 280)
    assert group({1: table, 2: umbrella, 3: chair}) == [(frozenset({1, 2}), (90, 120, 190, 260))]
    grouper = StallGrouper()
    [stall], ended = grouper.update({1: table, 2: umbrella, 3: chair})
    assert stall.stall_id == STALL_ID_BASE and ended == []
    moved_chair = (185, 210, 215, 262)
    [same], _ = grouper.update({1: table, 2: umbrella, 3: moved_chair})
    assert same.stall_id == stall.stall_id and same.pieces == {1, 2, 3}
    assert grouper.update({3: chair}) == ([], [same])


def test_ids_of_tracks_left_objects_and_stalls_do_not_collide() -> None:
    assert subject_id(7) == "t7"
    assert subject_id(ID_BASE + 3) == "o3"
    assert subject_id(STALL_ID_BASE + 2) == "s2"
