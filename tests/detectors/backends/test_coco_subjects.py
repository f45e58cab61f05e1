"""The COCO-80 classes and the subjects the rules know them as."""

from __future__ import annotations

from detectors.coco import COCO_NAMES, COCO_SUBJECTS, coco_names, is_coco80


def test_the_mapping() -> None:
    assert len(COCO_NAMES) == 80 and set(COCO_SUBJECTS) <= set(COCO_NAMES)
    by_subject: dict[str, set[str]] = {}
    for name, subject in COCO_SUBJECTS.items():
        by_subject.setdefault(subject, set()).add(name)
    assert by_subject == {
        "person": {"person"},
        "bicycle": {"bicycle"},
        "motorcycle": {"motorcycle"},
        "car": {"car"},
        "truck": {"bus", "truck"},
        "stall_furniture": {"umbrella", "dining table", "chair", "bench"},
        "goods": {"suitcase", "handbag", "backpack", "potted plant", "bottle"},
    }


def test_coco80_is_told_by_names_in_order() -> None:
    assert is_coco80(coco_names())
    assert not is_coco80({0: "Normal", 1: "Fall"})
    swapped = coco_names() | {0: "bicycle", 1: "person"}
    assert not is_coco80(swapped)
    assert not is_coco80(dict(list(coco_names().items())[:79]))
