"""What the backends that decode their model's raw output share: prepare, run, decode, NMS."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from detectors.backends.base import Boxes, UnsupportedWeights
from detectors.backends.letterbox import Letterbox
from detectors.backends.nms import select

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Full-input xyxy boxes, scores and class ids above the threshold, before NMS."""


def choose_runtime(
    weights: object, requested: str, auto: str, allowed: Sequence[str], what: str
) -> str:
    """The runtime to use: `auto` resolves to the family's measured fastest; anything the
    family cannot run on is refused, naming the file."""
    runtime = auto if requested == "auto" else requested
    if runtime not in allowed:
        raise UnsupportedWeights(
            f"{weights}: {what} runs on {' or '.join(allowed)}, not {requested!r}"
        )
    return runtime


class DecodedBackend:
    """A model run through a runtime session whose output this project decodes (YOLOX,
    YOLOv8 TFLite): subclasses give `prepare` (letterbox into the input tensor) and
    `decode` (output → boxes at `conf`)."""

    session: Callable[[np.ndarray], object]

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        raise NotImplementedError

    def decode(self, output: object, conf: float) -> Decoded:
        raise NotImplementedError

    def detect(
        self,
        image: np.ndarray,
        *,
        conf: float,
        iou: float,
        classes: Sequence[int] | None = None,
        imgsz: int | None = None,
    ) -> Boxes:
        tensor, box = self.prepare(image)
        xyxy, scores, class_ids = self.decode(self.session(tensor), conf)
        found = select(xyxy, scores, class_ids, conf=conf, iou=iou, classes=classes)
        return Boxes(box.to_frame(found.xyxy), found.scores, found.class_ids)

    def inference(self, image: np.ndarray) -> Callable[[], object]:
        """The bare model call on a prepared frame, for timing the model's own limit."""
        tensor, _ = self.prepare(image)
        return lambda: self.session(tensor)
