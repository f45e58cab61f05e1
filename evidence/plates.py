"""The party of a vehicle case: its plate, read once at package time.

A vehicle case is a vehicle subject (car, truck, ...) in a no-parking or fire-lane camera zone
(`evidence.plates`). Its plate is read on the frame where the camera saw the vehicle best (the
observations' most confident box), inside that box; the next best frames are tried only when
that one gives no valid reading. What it yields: the manifest's party
`{kind: vehicle, plate, plate_confidence, plate_kind}` and two sealed snapshots, the plate's
pixels as the camera took them (`plate.raw.png`, lossless, cut from the decoded frame around the
detected box) and the squared-up crop that was read (`plate.rectified.png`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors.assets import asset
from detectors.observation import Observation
from detectors.plates import DEFAULT_MODEL, PlateReader, PlateReading
from evidence.package import both_times
from ingest.config.evidence import EvidencePlates
from ingest.frames import EncodedFrame
from rules.violation import Violation

log = logging.getLogger(__name__)

TRIES = 3
"""Distinct frames tried at most, best first, before a case is left without a plate."""
RAW_MARGIN = 0.25
"""Context kept around the plate's box in the raw crop, as a fraction of its size."""


Nearest = Callable[[Sequence[EncodedFrame], datetime], tuple[EncodedFrame, np.ndarray] | None]
"""The ring buffer's frame nearest a time that decodes, decoded (the builder's)."""


class PlatesUnavailable(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class PlateFinding:
    """One camera's attempt at a case's plate."""

    frames_tried: int
    reading: PlateReading | None = None
    """The accepted reading (valid format, confidence at or above the setting), if any."""
    frame: EncodedFrame | None = None
    raw_crop: np.ndarray | None = None
    raw_box: tuple[int, int, int, int] | None = None
    """x1, y1, x2, y2 of `raw_crop` in the frame."""

    def info(self, tz: Any) -> dict[str, Any]:
        """What the manifest records under media.<camera>.plate."""
        if self.reading is None or self.frame is None:
            return {"read": False, "frames_tried": self.frames_tried}
        d = self.reading.detection
        return {
            "read": True,
            "plate": self.reading.plate,
            "kind": None if self.reading.kind is None else self.reading.kind.value,
            "confidence": round(self.reading.confidence, 4),
            "detect_score": round(d.score, 4),
            "double_row": d.double_row,
            "frame_index": self.frame.index,
            "at": both_times(self.frame.ts, tz),
            "box": [round(v, 1) for v in d.box],
            "corners": [[round(float(x), 1), round(float(y), 1)] for x, y in d.corners],
            "raw_box": list(self.raw_box) if self.raw_box else None,
            "frames_tried": self.frames_tried,
        }


class PlateStage:
    """Vehicle cases' plates for the evidence builder; the model loads on the first one."""

    def __init__(self, settings: EvidencePlates, reader: PlateReader | None = None) -> None:
        self.settings = settings
        self._reader = reader
        self._lock = threading.Lock()
        self.model: Path | None = None
        if reader is not None or not settings.enabled:
            return
        if settings.detector is not None:
            if not Path(settings.detector).is_file():
                raise PlatesUnavailable(
                    f"evidence.plates.detector: {settings.detector} does not exist"
                )
            self.model = Path(settings.detector)
        else:
            self.model = asset(DEFAULT_MODEL)
            if self.model is None:
                log.info(
                    "plate reading off: evidence.plates.detector unset and %s not in the "
                    "shared assets; vehicle cases carry no plate",
                    DEFAULT_MODEL,
                )

    @property
    def active(self) -> bool:
        return self.settings.enabled and (self._reader is not None or self.model is not None)

    def applies(self, v: Violation) -> bool:
        """A vehicle case: its party is a vehicle, whether or not a plate can be read."""
        return (
            v.party is None
            and v.subject in self.settings.subjects
            and v.zone_kind in {k.value for k in self.settings.zone_kinds}
        )

    def reader(self) -> PlateReader:
        with self._lock:
            if self._reader is None:
                assert self.model is not None
                self._reader = PlateReader.load(
                    self.model, det_conf=self.settings.detect_score, threads=self.settings.threads
                )
            return self._reader

    def find(
        self,
        v: Violation,
        frames: Sequence[EncodedFrame],
        observations: Sequence[Observation],
        nearest: Nearest,
    ) -> PlateFinding:
        """The plate on this camera's best frames of the vehicle (or the confirmed frame whole,
        when no observation carries a box)."""
        reader = self.reader()
        tried = 0
        for ts, box in _candidates(v, observations):
            found = nearest(frames, ts)
            if found is None:
                continue
            frame, image = found
            tried += 1
            best = reader.best(image, box, min_confidence=self.settings.min_confidence)
            if best is not None:
                crop, raw_box = raw_crop(image, best.detection.box)
                return PlateFinding(tried, best, frame, crop, raw_box)
            if tried >= TRIES:
                break
        return PlateFinding(tried)


def vehicle_party(findings: Sequence[PlateFinding]) -> dict[str, Any]:
    """The manifest party of a vehicle case: the most confident plate any camera read."""
    read = [f.reading for f in findings if f.reading is not None]
    best = max(read, key=lambda r: r.confidence, default=None)
    return {
        "kind": "vehicle",
        "plate": None if best is None else best.plate,
        "plate_confidence": None if best is None else round(best.confidence, 4),
        "plate_kind": None if best is None or best.kind is None else best.kind.value,
    }


def raw_crop(
    image: np.ndarray, box: tuple[float, float, float, float]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The frame's own pixels around a plate box, with some margin."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * RAW_MARGIN, (y2 - y1) * RAW_MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return image[top:bottom, left:right].copy(), (left, top, right, bottom)


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def _candidates(
    v: Violation, observations: Sequence[Observation]
) -> list[tuple[datetime, tuple[float, float, float, float] | None]]:
    boxed = sorted(
        (o for o in observations if o.frame is not None),
        key=lambda o: -o.frame.confidence,  # type: ignore[union-attr]
    )
    out: list[tuple[datetime, tuple[float, float, float, float] | None]] = []
    for o in boxed:
        ts = o.frame.frame_ts  # type: ignore[union-attr]
        if all(ts != t for t, _ in out):
            out.append((ts, tuple(float(c) for c in o.frame.box)))  # type: ignore[union-attr]
    return out or [(v.opened_at, None)]
