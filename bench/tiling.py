"""Tiled inference (detectors/tiling.py) against whole-frame detection, on one core.

  - kite.jpg (1352×900, many small distant people): people found whole-frame vs tiled, and
    ms per frame for each;
  - vtest.avi's first frame upscaled 4× (3072×2304): the people whole-frame on the original
    frame vs tiled on the upscale, and the tiled ms;
  - kite.jpg upscaled to 24 megapixels (6000×4000, the seeds' panoramic cameras' size): ms for
    every tile, and for the tiles under one moved region (what the motion gate leaves).

The model is COCO YOLOX-Nano from ../shared/assets (tiles of its input side, 416), else the
person model `make footage` installs (640). CPU ms (robust when others share the box) with
wall ms beside it; the median of a few runs.

    .venv/bin/python bench/tiling.py [--repeats 3]

Last line: `tiled_people_kite: N people`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from detectors.assets import FOOTAGE, asset  # noqa: E402
from detectors.detections import Detections  # noqa: E402
from detectors.tiling import TiledDetector  # noqa: E402
from detectors.yolo import YoloDetector  # noqa: E402
from ingest.config import Tiling  # noqa: E402

PERSON_PT = REPO / "var" / "models" / "person-yolov8s.pt"
CONF = 0.3


def detector() -> YoloDetector:
    yolox = asset("models/yolox_nano.onnx")
    if yolox is not None:
        return YoloDetector(
            yolox, family="yolox", conf=CONF, classes={"person": "person"}, threads=1
        )
    if not PERSON_PT.is_file():
        sys.exit(f"{PERSON_PT} missing: run `make footage`")
    classes = {"Normal": "person", "Fall": "person"}
    return YoloDetector(PERSON_PT, conf=CONF, classes=classes, threads=1)


def timed(call: Callable[[], Detections], repeats: int) -> tuple[Detections, float, float]:
    """The call's result and its median (CPU ms, wall ms) over `repeats` runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        result = call()
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return result, statistics.median(cpu), statistics.median(wall)


def people(found: Detections) -> int:
    return sum(1 for s in found.subjects if s == "person")


def image(name: str) -> np.ndarray:
    path = FOOTAGE / name
    if not path.is_file():
        sys.exit(f"{path} missing: run `make footage`")
    if path.suffix == ".avi":
        capture = cv2.VideoCapture(str(path))
        ok, frame = capture.read()
        capture.release()
        if not ok:
            sys.exit(f"{path}: no frame")
        return frame
    return cv2.imread(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = detector()
    settings = Tiling(tile_px=model.imgsz)
    tiled = TiledDetector(model, settings)
    print(
        f"model {model.backend} {model.weights.name}, input {model.imgsz}; tiles "
        f"{settings.tile_px} px, overlap {settings.overlap}, resized full frame "
        f"{settings.full_frame}; 1 core, OMP_NUM_THREADS=1, conf {CONF}"
    )
    model.detect(np.zeros((64, 64, 3), np.uint8))

    kite = image("kite.jpg")
    whole, cpu_w, wall_w = timed(lambda: model.detect(kite), args.repeats)
    runs = tiled.plan(kite.shape[1], kite.shape[0])
    found, cpu_t, wall_t = timed(lambda: tiled.detect(kite), args.repeats)
    print(f"kite.jpg {kite.shape[1]}x{kite.shape[0]}:")
    print(f"  whole frame: {people(whole)} people, {cpu_w:.0f} ms CPU ({wall_w:.0f} wall)")
    print(
        f"  tiled ({len(runs.tiles)} tiles + full {runs.full}): {people(found)} people, "
        f"{cpu_t:.0f} ms CPU ({wall_t:.0f} wall)"
    )
    kite_people = people(found)

    frame = image("vtest.avi")
    up = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    whole = model.detect(frame)
    runs = tiled.plan(up.shape[1], up.shape[0])
    found, cpu_t, wall_t = timed(lambda: tiled.detect(up), args.repeats)
    print(f"vtest.avi frame 0 upscaled 4x, {up.shape[1]}x{up.shape[0]}:")
    print(f"  whole frame at 768x576: {people(whole)} people")
    print(
        f"  tiled ({len(runs.tiles)} tiles + full {runs.full}): {people(found)} people, "
        f"{cpu_t:.0f} ms CPU ({wall_t:.0f} wall)"
    )

    big = cv2.resize(kite, (6000, 4000), interpolation=cv2.INTER_CUBIC)
    runs = tiled.plan(6000, 4000)
    found, cpu_t, wall_t = timed(lambda: tiled.detect(big), 1)
    print("kite.jpg upscaled to 6000x4000 (24 MP):")
    print(
        f"  every tile ({len(runs.tiles)} + full {runs.full}): {people(found)} people, "
        f"{cpu_t:.0f} ms CPU ({wall_t:.0f} wall), {cpu_t / (len(runs.tiles) + 1):.0f} ms a run"
    )
    scale = 6000 / kite.shape[1]
    region = tuple(round(v * scale) for v in (60, 490, 130, 580))
    runs = tiled.plan(6000, 4000, [region])
    found, cpu_t, wall_t = timed(lambda: tiled.detect_regions(big, [region]), args.repeats)
    print(
        f"  one moved region {region[2] - region[0]}x{region[3] - region[1]} (the beach "
        f"family): {len(runs.tiles)} tiles + full {runs.full}, {people(found)} people, "
        f"{cpu_t:.0f} ms CPU ({wall_t:.0f} wall)"
    )
    print(f"tiled_people_kite: {kite_people} people")


if __name__ == "__main__":
    main()
