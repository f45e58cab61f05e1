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

Limits beside the figures, from the same run: the 12 people boxed by hand in kite.jpg (the
boxes tests/detectors/test_tiling.py holds; `ratio_to_hand_boxed` = people found by the tiles
/ 12), and the raw model call on a prepared tile (the backend's `inference`, no letterbox,
decoding or merge) times the model runs a tiled frame takes (`limit_raw_model_ms`;
`ratio_to_raw_model` = tiled CPU-ms / that).

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
KITE_PEOPLE = np.array(
    [
        (112, 608, 167, 763),
        (215, 696, 273, 859),
        (22, 527, 38, 557),
        (37, 511, 56, 562),
        (81, 506, 109, 567),
        (96, 538, 109, 566),
        (177, 540, 194, 573),
        (346, 487, 358, 505),
        (519, 503, 536, 531),
        (537, 515, 556, 534),
        (694, 461, 703, 472),
        (1205, 452, 1215, 464),
    ],
    np.float32,
)
"""The 12 people in kite.jpg, boxed by hand (the same boxes as tests/detectors/test_tiling.py)."""


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


def hand_boxed_found(found: Detections) -> int:
    """How many of KITE_PEOPLE some person box finds: it holds their centre, at most 4× their
    size either way; each box finds the nearest one (the test's matcher)."""
    people = KITE_PEOPLE
    centres = (people[:, :2] + people[:, 2:]) / 2
    areas = np.prod(people[:, 2:] - people[:, :2], axis=1)
    hits = set()
    for box, subject in zip(found.xyxy, found.subjects, strict=True):
        if subject != "person":
            continue
        area = np.prod(box[2:] - box[:2])
        inside = np.all((centres >= box[:2]) & (centres <= box[2:]), axis=1)
        fits = (area <= 4 * areas) & (area >= areas / 4)
        candidates = np.nonzero(inside & fits)[0]
        if len(candidates):
            distance = np.linalg.norm(centres[candidates] - (box[:2] + box[2:]) / 2, axis=1)
            hits.add(int(candidates[np.argmin(distance)]))
    return len(hits)


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
    boxed_whole, boxed_tiled = hand_boxed_found(whole), hand_boxed_found(found)
    print(
        f"  of {len(KITE_PEOPLE)} hand-boxed people: whole frame {boxed_whole}, tiled {boxed_tiled}"
    )
    tile = kite[: settings.tile_px, : settings.tile_px]
    _, raw_cpu, raw_wall = timed(model.model.inference(tile), max(args.repeats, 5))
    model_runs = len(runs.tiles) + int(runs.full)
    kite_cpu = cpu_t
    print(
        f"  raw model call on one prepared tile: {raw_cpu:.1f} ms CPU ({raw_wall:.1f} wall) "
        f"x {model_runs} runs = {raw_cpu * model_runs:.0f} ms"
    )

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
    print(f"limit_people_hand_boxed: {len(KITE_PEOPLE)} people")
    print(
        f"ratio_to_hand_boxed: {boxed_tiled / len(KITE_PEOPLE):.2f} (whole frame "
        f"{boxed_whole / len(KITE_PEOPLE):.2f})"
    )
    print(f"limit_raw_model_ms: {raw_cpu * model_runs:.0f} ms ({model_runs} model runs)")
    print(f"ratio_to_raw_model: {kite_cpu / (raw_cpu * model_runs):.2f}")
    print(f"tiled_people_kite: {kite_people} people")


if __name__ == "__main__":
    main()
