"""Plates found and read on real photographs and real plate crops (the shared assets).

The expected texts were read by a person off each photograph, enlarged (bench/labels/
plates_photos.json holds all of them; these are the clearly legible ones)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.plates import DEFAULT_MODEL, PlateKind, PlateReader, check_plate, rectify
from tests.assets import shared_asset

PHOTOS = {
    "Quicker_20220930_180856.png": ("川A8H458", PlateKind.STANDARD),
    "hongkang1.jpg": ("粤ZR066港", PlateKind.HONG_KONG),
    "hyperlpr-test_img.jpg": ("苏ED51712", PlateKind.NEW_ENERGY),
    "moto.png": ("沪AN9241", PlateKind.STANDARD),  # double-row (motorcycle)
    "police.jpg": ("鄂F8888警", PlateKind.POLICE),
    "shi_lin_guan.jpg": ("沪A1707领", PlateKind.CONSULATE),
    "single_green.jpg": ("沪AF71017", PlateKind.NEW_ENERGY),
    "single_yellow.jpg": ("皖K66666", PlateKind.STANDARD),
    "xue.jpg": ("琼A6716学", PlateKind.SCHOOL),
}
CROPS_FLOOR = 0.95
"""Exact reads over every 5th of the 1,000 CCPD crops: measured 197/200 (98.5 %)."""


def _image(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader.load(shared_asset(DEFAULT_MODEL))


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_photo_plate_found_and_read_exactly(reader: PlateReader, name: str) -> None:
    image = _image(shared_asset(f"plates/photos/{name}"))
    plate, kind = PHOTOS[name]
    readings = reader.read(image)
    valid = [r for r in readings if r.valid]
    assert [r.plate for r in valid] == [plate], [(r.raw_text, r.confidence) for r in readings]
    found = valid[0]
    assert found.kind is kind and found.confidence >= 0.8
    assert found.detection.double_row is (name == "moto.png")
    x1, y1, x2, y2 = found.detection.box
    assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
    cx, cy = found.detection.corners.mean(axis=0)
    assert x1 <= cx <= x2 and y1 <= cy <= y2


def test_a_plate_like_sign_is_no_plate(reader: PlateReader) -> None:
    """A truck's 危险品 (dangerous goods) sign looks like a plate to the detector."""
    readings = reader.read(_image(shared_asset("plates/photos/tmp8F1F.png")))
    assert readings and not any(r.valid for r in readings)


def test_only_the_vehicle_box_is_searched(reader: PlateReader) -> None:
    """Two parked cars: inside the BMW's box only its plate, in the whole frame's pixels."""
    image = _image(shared_asset("plates/photos/Quicker_20220930_181044.png"))
    assert len([r for r in reader.read(image) if r.valid]) == 2
    box = (270.0, 0.0, 641.0, 275.0)
    best = reader.best(image, box, min_confidence=0.8)
    assert best is not None and best.plate == "粤B6R678"
    assert [r.plate for r in reader.read(image, box) if r.valid] == ["粤B6R678"]
    x1, y1, x2, y2 = best.detection.box
    assert box[0] <= x1 < x2 <= box[2] and box[1] <= y1 < y2 <= box[3]
    assert 340 < x1 < 370 and 190 < y1 < 215  # where the plate is in the photo


def test_rectified_crop_is_upright_plate_shaped(reader: PlateReader) -> None:
    image = _image(shared_asset("plates/photos/hyperlpr-2.jpg"))  # a plate seen at a slant
    (found,) = reader.read(image)
    crop = rectify(image, found.detection.corners)
    _, y1, _, y2 = found.detection.box
    assert crop.shape[0] < (y2 - y1)  # the slant is gone: less tall than its box
    assert 2.5 < crop.shape[1] / crop.shape[0] < 4.0  # a 440×140 mm plate


def test_crops_read_exactly_above_the_floor(reader: PlateReader) -> None:
    folder = shared_asset("plates/crops")
    sample = sorted(folder.glob("*.jpg"))[::5]
    assert len(sample) == 200
    exact = 0
    for path in sample:
        checked = check_plate(reader.read_crop(_image(path)).text)
        exact += checked is not None and checked.text == path.stem
    assert exact / len(sample) >= CROPS_FLOOR, f"{exact}/{len(sample)}"
