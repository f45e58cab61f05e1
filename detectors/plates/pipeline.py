"""Plates in a frame: detect (inside a vehicle's box, or the whole frame), square up each plate
by its corners, read it (a double-row plate as two lines joined), and keep the readings that
are Chinese plates. Run once per case on one frame, not per frame: ~20–40 ms a plate on a CPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.plates.detect import PlateDetection, PlateDetector
from detectors.plates.formats import PlateKind, check_plate
from detectors.plates.read import PLATE_RATIO, PlateTextReader, TextReading
from detectors.plates.rectify import DOUBLE_ROW_SPLITS, rectify, split_rows

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class PlateReading:
    detection: PlateDetection
    """Box and corners in the pixels of the whole frame."""
    crop: np.ndarray
    """The rectified plate (BGR)."""
    raw_text: str
    confidence: float
    plate: str | None
    """The plate as its format writes it, or None when the reading fits no plate format."""
    kind: PlateKind | None

    @property
    def valid(self) -> bool:
        return self.plate is not None


class PlateReader:
    def __init__(
        self,
        detector: PlateDetector,
        reader: PlateTextReader,
        *,
        margin: float = 0.1,
    ) -> None:
        self.detector = detector
        self.reader = reader
        self.margin = margin

    @classmethod
    def load(cls, model: str | Path, *, det_conf: float = 0.5, threads: int = 1) -> PlateReader:
        return cls(
            PlateDetector(model, conf=det_conf, threads=threads), PlateTextReader(threads=threads)
        )

    def read(self, image: np.ndarray, box: Box | None = None) -> list[PlateReading]:
        """Every plate found in `image` (or inside `box`, x1 y1 x2 y2), best detection first."""
        region, (ox, oy) = self._region(image, box)
        if region.size == 0:
            return []
        out = []
        for found in self.detector.detect(region):
            detection = PlateDetection(
                box=(found.box[0] + ox, found.box[1] + oy, found.box[2] + ox, found.box[3] + oy),
                corners=found.corners + np.array([ox, oy], np.float32),
                score=found.score,
                double_row=found.double_row,
            )
            crop = rectify(image, detection.corners)
            text = self.read_crop(crop, double_row=detection.double_row)
            checked = check_plate(text.text)
            out.append(
                PlateReading(
                    detection=detection,
                    crop=crop,
                    raw_text=text.text,
                    confidence=text.confidence,
                    plate=None if checked is None else checked.text,
                    kind=None if checked is None else checked.kind,
                )
            )
        return out

    def best(
        self, image: np.ndarray, box: Box | None = None, *, min_confidence: float = 0.0
    ) -> PlateReading | None:
        """The most confident valid reading at or above `min_confidence`, if any."""
        valid = [r for r in self.read(image, box) if r.valid and r.confidence >= min_confidence]
        return max(valid, key=lambda r: r.confidence, default=None)

    def read_crop(self, crop: np.ndarray, *, double_row: bool = False) -> TextReading:
        """The text of a rectified plate, read a few ways; the most confident reading that is a
        plate wins. One row: stretched to the plate ratio and as cut (a narrow suffix such as
        领 reads better unstretched). Two rows: row by row at a few split lines (the corners
        include more or less of the rim); the lesser row's confidence is the plate's."""
        if not double_row:
            readings = [self.reader.read(crop, ratio=r) for r in (PLATE_RATIO, None)]
            return _best(readings)
        readings = []
        for split in DOUBLE_ROW_SPLITS:
            top, bottom = split_rows(crop, split)
            upper, lower = self.reader.read(top, ratio=None), self.reader.read(bottom, ratio=None)
            readings.append(
                TextReading(upper.text + lower.text, min(upper.confidence, lower.confidence))
            )
        return _best(readings)

    def _region(self, image: np.ndarray, box: Box | None) -> tuple[np.ndarray, tuple[int, int]]:
        if box is None:
            return image, (0, 0)
        h, w = image.shape[:2]
        x1, y1, x2, y2 = box
        mx, my = (x2 - x1) * self.margin, (y2 - y1) * self.margin
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
        return image[top:bottom, left:right], (left, top)


def _best(readings: list[TextReading]) -> TextReading:
    valid = [r for r in readings if check_plate(r.text) is not None]
    return max(valid or readings, key=lambda r: r.confidence)
