"""Plate reading and face blur on real pixels (../shared/assets), one thread each.

  - photos (plates/photos, 17): plates found (a detection with IoU >= 0.5 on a labelled plate,
    bench/labels/plates_photos.json), read exactly (the valid reading equals the label, over
    the legible ones), false plates (valid readings on no labelled plate);
  - crops (plates/crops, 1,000 CCPD crops named by their text): exact reads (valid format and
    equal to the name);
  - ms per plate: detection (one full photo through the 640 model), reading (one rectified
    crop, all the ways `PlateReader.read_crop` tries), medians of CPU ms (one thread, so robust
    when others share the box) with wall ms beside;
  - faces (faces/, 43 annotated in imglab XML): YuNet recall at the default min_score, by
    IoU >= 0.5 and by the annotated centre inside a detection.

The limit beside the crops' figure, in the same run on the same crops: the bare library,
rapidocr's PP-OCRv4 `TextRecognizer` called as rapidocr calls it (the crop as it is, its
full 6,600-character set, no stretching, no second pass, no format check), exact when its text
(spaces and dots dropped) equals the name: `limit_bare_recogniser_exact`, `ratio_to_bare_recogniser`
= the pipeline's exact reads over the bare ones, and its ms per crop beside the pipeline's.

    .venv/bin/python bench/plates.py [--crops N]

Last line: `plate_exact_read: N %` (the 1,000 crops). For bench/accuracy.py:
`plate_exact_read_rate()`, `photo_plate_scores()`, `face_recall()`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.assets import MISSING_HINT, asset  # noqa: E402
from detectors.plates import DEFAULT_MODEL, PlateReader, check_plate  # noqa: E402

LABELS = REPO / "bench" / "labels" / "plates_photos.json"
YUNET = "models/face_detection_yunet.onnx"

Box = tuple[float, float, float, float]


def _need(relative: str) -> Path:
    path = asset(relative)
    if path is None:
        raise SystemExit(f"{relative}: {MISSING_HINT}")
    return path


def _image(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image")
    return image


@cache
def reader() -> PlateReader:
    cv2.setNumThreads(1)
    return PlateReader.load(_need(DEFAULT_MODEL), threads=1)


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class PhotoScores:
    plates: int = 0
    found: int = 0
    legible: int = 0
    exact: int = 0
    false_plates: int = 0
    detect_ms: list[tuple[float, float]] = field(default_factory=list)
    """(CPU ms, wall ms) per photo."""
    misses: list[str] = field(default_factory=list)


def photo_plate_scores() -> PhotoScores:
    """Plates found and read exactly on plates/photos against bench/labels/plates_photos.json."""
    labels = json.loads(LABELS.read_text())["photos"]
    folder = _need("plates/photos")
    scores = PhotoScores()
    for name, plates in sorted(labels.items()):
        image = _image(folder / name)
        cpu, wall = time.process_time(), time.perf_counter()
        reader().detector.detect(image)
        scores.detect_ms.append(
            ((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000)
        )
        readings = reader().read(image)
        matched: set[int] = set()
        for plate in plates:
            box = tuple(plate["box"])
            hits = [i for i, r in enumerate(readings) if _iou(box, r.detection.box) >= 0.5]
            scores.plates += 1
            scores.found += bool(hits)
            matched.update(hits)
            if plate["text"] is None:
                continue
            scores.legible += 1
            got = [readings[i].plate for i in hits if readings[i].valid]
            if plate["text"] in got:
                scores.exact += 1
            else:
                scores.misses.append(f"{name}: {plate['text']} read as {got or 'nothing'}")
        scores.false_plates += sum(
            1 for i, r in enumerate(readings) if r.valid and i not in matched
        )
    return scores


def plate_exact_read_rate(limit: int | None = None) -> float:
    """Exact reads (valid format, equal to the file name) over the CCPD crops, 0–1; `limit`
    takes an evenly spaced sample of that many."""
    return _crops(limit)[0]


def _crop_files(limit: int | None) -> list[Path]:
    files = sorted(_need("plates/crops").glob("*.jpg"))
    if limit is not None and limit < len(files):
        files = files[:: len(files) // limit][:limit]
    return files


def bare_recogniser(limit: int | None) -> tuple[float, list[tuple[float, float]]]:
    """Exact-read share and (CPU ms, wall ms) per crop of rapidocr's recogniser as rapidocr
    calls it, on the same crops."""
    recogniser = reader().reader._rec
    files = _crop_files(limit)
    exact, times = 0, []
    for path in files:
        image = _image(path)
        cpu, wall = time.process_time(), time.perf_counter()
        (text, _), *_ = recogniser(image)[0]
        times.append(((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))
        exact += "".join(c for c in text if c not in " ·.") == path.stem
    return exact / len(files), times


def _crops(limit: int | None) -> tuple[float, list[tuple[float, float]], list[str]]:
    files = _crop_files(limit)
    exact, times, wrong = 0, [], []
    for path in files:
        image = _image(path)
        cpu, wall = time.process_time(), time.perf_counter()
        text = reader().read_crop(image)
        times.append(((time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))
        checked = check_plate(text.text)
        if checked is not None and checked.text == path.stem:
            exact += 1
        else:
            wrong.append(f"{path.stem} read as {text.text!r} ({text.confidence:.2f})")
    return exact / len(files), times, wrong


def _annotated_faces() -> list[tuple[Path, list[tuple[float, float, float, float]]]]:
    folder = _need("faces")
    out = []
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(folder / name).getroot().iter("image"):
            boxes = [
                tuple(float(b.get(k, 0)) for k in ("left", "top", "width", "height"))
                for b in image.iter("box")
                if b.get("ignore") != "1"
            ]
            out.append((folder / str(image.get("file")), boxes))
    return out


def face_recall(criterion: str = "iou", min_score: float = 0.6) -> float:
    """YuNet's recall on the 43 annotated faces, 0–1: `iou` (IoU >= 0.5 with the annotated
    box) or `centre` (the annotated box's centre inside a detection)."""
    return _face_counts(min_score)[criterion] / _face_counts(min_score)["total"]


@cache
def _face_counts(min_score: float) -> dict[str, int]:
    detector = cv2.FaceDetectorYN.create(str(_need(YUNET)), "", (320, 320), min_score)
    counts = {"total": 0, "iou": 0, "centre": 0, "detections": 0}
    for path, boxes in _annotated_faces():
        image = _image(path)
        detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        found = [] if faces is None else [tuple(float(v) for v in f[:4]) for f in faces]
        counts["detections"] += len(found)
        for x, y, w, h in boxes:
            counts["total"] += 1
            truth = (x, y, x + w, y + h)
            dets = [(fx, fy, fx + fw, fy + fh) for fx, fy, fw, fh in found]
            counts["iou"] += any(_iou(truth, d) >= 0.5 for d in dets)
            cx, cy = x + w / 2, y + h / 2
            counts["centre"] += any(d[0] <= cx <= d[2] and d[1] <= cy <= d[3] for d in dets)
    return counts


def _median(samples: list[tuple[float, float]]) -> str:
    cpu = statistics.median(c for c, _ in samples)
    wall = statistics.median(w for _, w in samples)
    return f"{cpu:.1f} / {wall:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", type=int, default=None, help="evenly spaced sample size")
    args = parser.parse_args()

    start = time.perf_counter()
    reader()
    print(f"models loaded in {time.perf_counter() - start:.2f} s (one thread each)")

    photos = photo_plate_scores()
    print(
        f"photos: {photos.found}/{photos.plates} plates found, {photos.exact}/{photos.legible} "
        f"legible ones read exactly, {photos.false_plates} false plates"
    )
    for miss in photos.misses:
        print(f"  miss: {miss}")

    rate, read_ms, wrong = _crops(args.crops)
    print(f"crops: {rate * len(read_ms):.0f}/{len(read_ms)} read exactly ({rate * 100:.1f} %)")
    for line in wrong[:20]:
        print(f"  wrong: {line}")
    print(
        f"ms per plate (CPU / wall): detect {_median(photos.detect_ms)} "
        f"(one photo, 640 input, median of {len(photos.detect_ms)}), "
        f"read {_median(read_ms)} (one crop, median of {len(read_ms)})"
    )

    counts = _face_counts(0.6)
    print(
        f"faces (YuNet, min_score 0.6): recall {counts['iou']}/{counts['total']} at IoU >= 0.5, "
        f"{counts['centre']}/{counts['total']} centre-in-box; {counts['detections']} detections"
    )
    bare, bare_ms = bare_recogniser(args.crops)
    print(
        f"limit: rapidocr's recogniser alone on the same crops: {bare * 100:.1f} % exact, "
        f"{_median(bare_ms)} ms a crop (CPU / wall) against the pipeline's {_median(read_ms)}"
    )
    print(f"limit_bare_recogniser_exact: {bare * 100:.1f} %")
    print(
        f"ratio_to_bare_recogniser: {rate / bare:.2f}" if bare else "ratio_to_bare_recogniser: inf"
    )
    cpu = statistics.median(c for c, _ in read_ms) / statistics.median(c for c, _ in bare_ms)
    print(f"ratio_to_bare_recogniser_ms: {cpu:.2f}")
    print(f"plate_exact_read: {rate * 100:.1f} %")


if __name__ == "__main__":
    main()
