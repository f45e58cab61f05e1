"""One object boxed as two subjects of a group (a van as truck and car) keeps its best box."""

from __future__ import annotations

import numpy as np

from detectors.detections import Detections
from detectors.yolo import one_box_per_object


def boxes(*rows: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    return Detections(
        np.array([r[2] for r in rows], np.float32),
        np.array([r[1] for r in rows], np.float32),
        np.array([hash(r[0]) % 97 for r in rows], int),
        tuple(r[0] for r in rows),
    )


def test_a_van_boxed_as_truck_and_car_is_one_truck() -> None:
    found = one_box_per_object(
        boxes(("car", 0.64, (0, 0, 100, 60)), ("truck", 0.75, (2, 1, 101, 62)))
    )
    assert found.subjects == ("truck",)


def test_a_car_beside_a_truck_stays() -> None:
    found = one_box_per_object(
        boxes(("car", 0.64, (0, 0, 100, 60)), ("truck", 0.75, (90, 0, 200, 60)))
    )
    assert sorted(found.subjects) == ["car", "truck"]


def test_other_groups_and_people_are_never_merged() -> None:
    found = one_box_per_object(
        boxes(
            ("bicycle", 0.5, (0, 0, 50, 50)),
            ("motorcycle", 0.8, (1, 1, 50, 50)),
            ("person", 0.9, (0, 0, 50, 50)),
            ("car", 0.7, (0, 0, 50, 50)),
        )
    )
    assert sorted(found.subjects) == ["car", "motorcycle", "person"]
