"""The COCO-80 class names and which of them the rules care about, as which subject.

Used when a camera's `classes` is empty and its model names the COCO-80 classes: street
furniture a stall is built from is `stall_furniture` (the camera groups it into a `stall`),
things left on the pavement are `goods`; every other COCO class is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

COCO_SUBJECTS: Mapping[str, str] = {
    "person": "person",
    "bicycle": "bicycle",
    "motorcycle": "motorcycle",
    "car": "car",
    "bus": "truck",
    "truck": "truck",
    "umbrella": "stall_furniture",
    "dining table": "stall_furniture",
    "chair": "stall_furniture",
    "bench": "stall_furniture",
    "suitcase": "goods",
    "handbag": "goods",
    "backpack": "goods",
    "potted plant": "goods",
    "bottle": "goods",
}
"""COCO class name → the rules' subject."""


def coco_names() -> dict[int, str]:
    return dict(enumerate(COCO_NAMES))


def is_coco80(names: Mapping[int, str]) -> bool:
    """Whether a model's classes are the COCO-80 ones in the usual order."""
    return len(names) == len(COCO_NAMES) and all(
        names.get(i) == name for i, name in enumerate(COCO_NAMES)
    )
