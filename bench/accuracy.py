"""Detection accuracy on the hand-labelled frames (bench/labels/), per model and input size.

For each model (YOLOX-Nano 416, YOLOv8n int8 TFLite 640 and 416, the person YOLOv8s for the
person class) run through `detectors.backends` on every labelled frame, one thread, one model
at a time:
  - per class, at IoU 0.5: GT, TP, FP, precision and recall at the camera's operating
    confidence (0.35), and AP50 from the ranked scores (COCO's 101-point interpolation, scores
    down to 0.01); a detection lying mostly (≥ 50 % of its area) inside an ignore region of
    the frame counts neither way, a second detection of a matched object is a false positive;
  - CPU ms per frame (process time of the backend call: letterbox, model, decode, NMS).
Then the licence plate exact-read rate and face recall, measured by bench/plates.py's
functions (the plate/face bench), when present.

    OMP_NUM_THREADS=1 .venv/bin/python bench/accuracy.py [--models yolox-nano-416 ...]

The limit beside mAP50, from the same run: the model's recall ceiling, the share of labelled
objects any of its detections (score >= 0.01) matches at IoU 0.5, averaged over the classes as
mAP50 is; AP50 cannot exceed it (`limit_recall_ceiling`; `ratio_to_recall_ceiling` = mAP50 over
it: below 1 by what false detections ranked above true ones cost, the rest of the gap to 1 is
objects the model never proposes). Beside the CPU ms per frame: the raw model call on a
prepared frame (`limit_raw_model_ms`, `ratio_to_raw_model`).

Last line: `map50: N`, the mean AP50 over the six labelled classes of the COCO model with the
highest one (the recommended default).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.labelkit import (  # noqa: E402
    CLASSES,
    Frame,
    LabelFile,
    clip_path,
    label_files,
    read_frames,
)
from detectors.assets import MISSING_HINT, asset  # noqa: E402
from detectors.detections import box_iou  # noqa: E402

IOU = 0.5
"""A detection matches a labelled object at this IoU or more."""
OPERATING_CONF = 0.35
"""The camera's confidence threshold (devices.yaml detect.conf)."""
RANK_CONF = 0.01
"""Scores kept for the ranked list AP50 is computed from."""
NMS_IOU = 0.5
"""The camera's NMS IoU (YoloDetector's default)."""
IGNORE_SHARE = 0.5
"""A detection with at least this share of its area inside an ignore region is ignored."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    weights: str
    """Under the shared assets, or `var/...` in the checkout."""
    imgsz: int
    classes: Mapping[str, str] | None = None
    """Model class name → labelled class; None: the COCO names of the labelled classes."""

    @property
    def evaluated(self) -> tuple[str, ...]:
        if self.classes is None:
            return CLASSES
        return tuple(c for c in CLASSES if c in set(self.classes.values()))


MODELS = (
    ModelSpec("yolox-nano-416", "models/yolox_nano.onnx", 416),
    ModelSpec("yolov8n-int8-640", "models/yolov8n_int8_640.tflite", 640),
    ModelSpec("yolov8n-int8-416", "models/yolov8n_int8_416.tflite", 416),
    ModelSpec(
        "person-yolov8s-640",
        "var/models/person-yolov8s.pt",
        640,
        {"Normal": "person", "Fall": "person"},
    ),
)


def weights_path(spec: ModelSpec) -> Path | None:
    if spec.weights.startswith("var/"):
        path = REPO / spec.weights
        return path if path.exists() else None
    return asset(spec.weights)


@dataclass(frozen=True, slots=True)
class Found:
    xyxy: np.ndarray
    scores: np.ndarray
    classes: tuple[str, ...]


class Runner:
    """A backend that answers in labelled class names, only for the classes it evaluates."""

    def __init__(self, spec: ModelSpec, weights: Path, threads: int) -> None:
        from detectors.backends import load_backend

        if weights.suffix == ".pt":
            import torch

            torch.set_num_threads(threads)
        self.spec = spec
        self.backend = load_backend(weights, imgsz=spec.imgsz, threads=threads)
        wanted = spec.classes or {c: c for c in CLASSES}
        self.class_of = {i: wanted[n] for i, n in self.backend.names.items() if n in wanted}

    def detect(self, image: np.ndarray, *, conf: float) -> Found:
        boxes = self.backend.detect(
            image, conf=conf, iou=NMS_IOU, classes=sorted(self.class_of), imgsz=self.spec.imgsz
        )
        return Found(
            boxes.xyxy.astype(np.float32),
            boxes.scores.astype(np.float32),
            tuple(self.class_of[int(c)] for c in boxes.class_ids),
        )


def load(spec: ModelSpec, threads: int = 1) -> Runner | None:
    weights = weights_path(spec)
    if weights is None:
        return None
    return Runner(spec, weights, threads)


@dataclass(slots=True)
class Tally:
    """One class's ranked detections (score, TP?) and its labelled objects."""

    gt: int = 0
    scores: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)

    def at(self, conf: float) -> tuple[int, int]:
        """(TP, FP) among detections scoring at least `conf`."""
        scores, hits = np.array(self.scores), np.array(self.hits, bool)
        keep = scores >= conf
        return int(hits[keep].sum()), int((~hits[keep]).sum())

    def max_recall(self) -> float:
        """Share of the labelled objects matched by any detection (the ceiling of AP50)."""
        return sum(self.hits) / self.gt if self.gt else float("nan")

    def ap50(self) -> float:
        """COCO's 101-point interpolated average precision."""
        if not self.gt:
            return float("nan")
        order = np.argsort(-np.array(self.scores), kind="stable")
        hits = np.array(self.hits, bool)[order]
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        recall = tp / self.gt
        precision = tp / np.maximum(tp + fp, 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))


def inside_share(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Per box, the largest share of its area inside any region."""
    if not len(boxes) or not len(regions):
        return np.zeros(len(boxes))
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(1), 1e-6)
    return (inter / area[:, None]).max(1)


def score_frame(frame: Frame, found: Found, tallies: dict[str, Tally]) -> None:
    """Greedy matching by descending score, per class (COCO's rule at one IoU)."""
    ignores = np.array(frame.ignore, np.float32).reshape(-1, 4)
    for cls, tally in tallies.items():
        gt = np.array([b.xyxy for b in frame.boxes if b.cls == cls], np.float32).reshape(-1, 4)
        tally.gt += len(gt)
        mine = [i for i, c in enumerate(found.classes) if c == cls]
        if not mine:
            continue
        boxes, scores = found.xyxy[mine], found.scores[mine]
        order = np.argsort(-scores, kind="stable")
        ious = box_iou(boxes, gt)
        ignored = inside_share(boxes, ignores) >= IGNORE_SHARE
        taken = np.zeros(len(gt), bool)
        for d in order:
            candidates = np.where(~taken & (ious[d] >= IOU))[0] if len(gt) else []
            if len(candidates):
                taken[candidates[np.argmax(ious[d][candidates])]] = True
                tally.scores.append(float(scores[d]))
                tally.hits.append(True)
            elif not ignored[d]:
                tally.scores.append(float(scores[d]))
                tally.hits.append(False)


@dataclass(frozen=True, slots=True)
class Sample:
    clip: str
    frame: Frame
    image: np.ndarray


def samples() -> list[Sample]:
    """Every labelled frame, decoded once; clips that are absent are skipped with a message."""
    out = []
    for path in label_files():
        labels = LabelFile.load(path)
        clip = clip_path(labels.clip)
        if clip is None:
            print(f"skip {path.name}: {labels.clip} absent ({MISSING_HINT}; `make footage`)")
            continue
        wanted = {f.index: f for f in labels.frames}
        out += [Sample(path.stem, wanted[i], image) for i, image in read_frames(clip, wanted)]
    return out


@dataclass(frozen=True, slots=True)
class Result:
    spec: ModelSpec
    runtime: str
    tallies: dict[str, Tally]
    cpu_ms: float
    frames: int
    raw_ms: float
    """CPU ms of the bare model call on a prepared frame (median)."""

    @property
    def map50(self) -> float:
        aps = [t.ap50() for t in self.tallies.values() if t.gt]
        return float(np.mean(aps)) if aps else float("nan")

    @property
    def recall_ceiling(self) -> float:
        ceilings = [t.max_recall() for t in self.tallies.values() if t.gt]
        return float(np.mean(ceilings)) if ceilings else float("nan")


def evaluate(spec: ModelSpec, data: Sequence[Sample]) -> Result | None:
    runner = load(spec)
    if runner is None:
        print(f"skip {spec.name}: {spec.weights} absent ({MISSING_HINT})")
        return None
    runner.detect(data[0].image, conf=RANK_CONF)
    tallies = {c: Tally() for c in spec.evaluated}
    cpu = 0.0
    for sample in data:
        start = time.process_time()
        found = runner.detect(sample.image, conf=RANK_CONF)
        cpu += time.process_time() - start
        score_frame(sample.frame, found, tallies)
    call = runner.backend.inference(data[0].image)
    call()
    raw = []
    for _ in range(min(20, len(data))):
        start = time.process_time()
        call()
        raw.append(1000 * (time.process_time() - start))
    cpu_ms = 1000 * cpu / len(data)
    return Result(spec, runner.backend.runtime, tallies, cpu_ms, len(data), float(np.median(raw)))


def table(result: Result) -> list[str]:
    spec = result.spec
    lines = [
        f"{spec.name} ({result.runtime}, imgsz {spec.imgsz}, 1 thread): "
        f"{result.frames} frames, CPU {result.cpu_ms:.1f} ms/frame (raw model call "
        f"{result.raw_ms:.1f} ms)",
        f"  {'class':<11}{'GT':>5}{'TP':>6}{'FP':>6}{'precision':>11}{'recall':>8}{'AP50':>7}"
        f"   (TP/FP/precision/recall at conf {OPERATING_CONF})",
    ]
    for cls, tally in result.tallies.items():
        tp, fp = tally.at(OPERATING_CONF)
        precision = f"{tp / (tp + fp):.3f}" if tp + fp else "-"
        recall = f"{tp / tally.gt:.3f}" if tally.gt else "-"
        ap = f"{tally.ap50():.3f}" if tally.gt else "-"
        lines.append(f"  {cls:<11}{tally.gt:>5}{tp:>6}{fp:>6}{precision:>11}{recall:>8}{ap:>7}")
    lines.append(
        f"  mAP50 over {len(result.tallies)} class(es): {result.map50:.3f} (recall ceiling "
        f"{result.recall_ceiling:.3f}: "
        + ", ".join(f"{c} {t.max_recall():.2f}" for c, t in result.tallies.items() if t.gt)
        + ")"
    )
    return lines


def plates_and_faces() -> list[str]:
    """The plate and face figures, measured by bench/plates.py's own functions (its owner's
    bench); "not available" for whatever it or its assets do not offer."""
    try:
        from bench import plates
    except ImportError as error:
        return [f"plates and faces: not available ({error})"]

    def measure(label: str, name: str, show: Callable[[Any], str]) -> str:
        function = getattr(plates, name, None)
        if not callable(function):
            return f"{label}: not available (no bench.plates.{name})"
        try:
            return f"{label}: {show(function())}"
        except (Exception, SystemExit) as error:
            return f"{label}: not available ({error})"

    return [
        measure(
            "plate exact-read rate (1,000 CCPD crops)",
            "plate_exact_read_rate",
            lambda rate: f"{rate:.3f}",
        ),
        measure(
            "plates on the 17 photos",
            "photo_plate_scores",
            lambda s: (
                f"{s.found}/{s.plates} found, {s.exact}/{s.legible} legible read exactly, "
                f"{s.false_plates} false"
            ),
        ),
        measure("face recall (YuNet, IoU >= 0.5, 43 faces)", "face_recall", lambda r: f"{r:.3f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", choices=[m.name for m in MODELS])
    args = parser.parse_args()
    started = time.monotonic()
    data = samples()
    if not data:
        sys.exit("no labelled frames could be read")
    counts = {c: sum(b.cls == c for s in data for b in s.frame.boxes) for c in CLASSES}
    print(
        f"{len(data)} labelled frames from {len({s.clip for s in data})} clips; objects: "
        + ", ".join(f"{c} {n}" for c, n in counts.items())
    )
    results = []
    for spec in MODELS:
        if args.models and spec.name not in args.models:
            continue
        result = evaluate(spec, data)
        if result is not None:
            results.append(result)
            print("\n".join(table(result)), flush=True)
    for line in plates_and_faces():
        print(line)
    print(f"wall time {time.monotonic() - started:.0f} s")
    coco = [r for r in results if r.spec.classes is None]
    if not coco:
        sys.exit("no COCO model could be run: no map50")
    best = max(coco, key=lambda r: r.map50)
    print(f"default: {best.spec.name} (highest mAP50 over the {len(CLASSES)} labelled classes)")
    print(f"limit_recall_ceiling: {best.recall_ceiling:.3f}")
    print(f"ratio_to_recall_ceiling: {best.map50 / best.recall_ceiling:.3f}")
    print(f"limit_raw_model_ms: {best.raw_ms:.1f} ms")
    print(f"ratio_to_raw_model: {best.cpu_ms / best.raw_ms:.2f}")
    print(f"map50: {best.map50:.3f}")


if __name__ == "__main__":
    main()
