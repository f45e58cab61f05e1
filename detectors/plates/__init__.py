"""Licence plates: HyperLPR3 detection (box, corners, rows), perspective rectification,
PP-OCRv4 reading (rapidocr, recogniser only) and the Chinese plate formats that decide which
readings are plates. `PlateReader.load(model).best(frame, vehicle_box)` is the one call."""

from detectors.plates.detect import PlateDetection, PlateDetector
from detectors.plates.formats import PlateKind, PlateText, check_plate
from detectors.plates.pipeline import PlateReader, PlateReading
from detectors.plates.read import PlateTextReader, TextReading
from detectors.plates.rectify import rectify, split_rows

DEFAULT_MODEL = "models/plate_detect_hyperlpr3_640.onnx"
"""The detector's path under the shared assets (`detectors.assets.asset`)."""

__all__ = [
    "DEFAULT_MODEL",
    "PlateDetection",
    "PlateDetector",
    "PlateKind",
    "PlateReader",
    "PlateReading",
    "PlateText",
    "PlateTextReader",
    "TextReading",
    "check_plate",
    "rectify",
    "split_rows",
]
