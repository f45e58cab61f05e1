"""Drone ground projection: what placing a subject costs, beside what the frame costs anyway.

The car-park drone of devices.yaml (drone-car-park.mp4, the flight written for it): the boxes
the real COCO model finds in its frames are placed on the ground by `DroneLocator.place` (the
telemetry track's interpolated pose, the ray, the flat-ground intersection, the uncertainty's
13 extra projections for the numeric Jacobian, the zones' local metres).

    .venv/bin/python bench/groundproj.py [--frames 40] [--repeat 5]

Limits, in the same run on the same footprints:
- the bare ray-plane intersection alone (`ground_offset`, no uncertainty, no pose lookup):
  the floor of any flat-ground projection written in Python (`ratio_to_bare_ray`);
- the detector on the same frames (`detect_ms_per_frame`): what a frame costs anyway; the
  projection's share of it is `share_of_detect`.

Last line: `placements_per_s: N /s` (the best of the repeats).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from detectors.drone_locator import DroneLocator  # noqa: E402
from detectors.groundproj import NotPlaced, ground_offset  # noqa: E402
from detectors.yolo import YoloDetector  # noqa: E402
from detectors.zones import footprint  # noqa: E402
from ingest.config import load_config  # noqa: E402
from ingest.readings import DroneTelemetry  # noqa: E402
from streetwatch.scenario_drone import footage_telemetry  # noqa: E402

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    config = load_config(REPO / "devices.yaml")
    device = config.device("drone-02")
    assert device is not None and device.detect is not None and device.stream
    stream = (REPO / device.stream).resolve()
    weights = (REPO / device.detect.weights).resolve()
    if not stream.exists() or not weights.exists():
        sys.exit(f"{stream} or {weights} is missing: the shared assets are needed")
    capture = cv2.VideoCapture(str(stream))
    fps = capture.get(cv2.CAP_PROP_FPS)
    detector = YoloDetector(weights, imgsz=device.detect.imgsz, conf=device.detect.conf)
    step = max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) // args.frames)
    frames: list[tuple[datetime, dict[int, tuple[float, float]], tuple[int, int]]] = []
    detect_s = 0.0
    index = 0
    while len(frames) < args.frames:
        ok, image = capture.read()
        if not ok:
            break
        if index % step == 0:
            started = time.perf_counter()
            found = detector.detect(image)
            detect_s += time.perf_counter() - started
            feet = {i: footprint(box) for i, box in enumerate(found.xyxy.tolist())}
            ts = START + timedelta(seconds=index / fps)
            frames.append((ts, feet, (image.shape[1], image.shape[0])))
        index += 1
    detect_ms = detect_s / len(frames) * 1000
    n = sum(len(feet) for _, feet, _ in frames)

    locator = DroneLocator(device)
    locator.zones(device.zones, device.detect.zone_exit_s)
    for message in footage_telemetry(config, duration_s=25, start=START):
        data = json.loads(message.payload)
        locator.telemetry(
            datetime.fromisoformat(data["ts"]),
            DroneTelemetry(
                data["lat"], data["lon"], data["alt_m"], data["heading"], data["gimbal_pitch"]
            ),
        )
    k = locator._k(frames[0][2])
    rates, floors = [], []
    for run in range(args.repeat):
        started = time.perf_counter()
        for ts, feet, size in frames:
            locator.place(feet, ts, size)
        seconds = time.perf_counter() - started
        rates.append(n / seconds)
        started = time.perf_counter()
        for ts, feet, _ in frames:
            pose = locator.track.pose_at(ts)
            for u, v in feet.values():
                with contextlib.suppress(NotPlaced):
                    ground_offset(u, v, k, pose.alt_m, pose.heading_deg, pose.pitch_deg)
        floors.append(n / (time.perf_counter() - started))
        print(
            f"run {run + 1}: {rates[-1]:,.0f} placements/s; "
            f"limit: bare ray-plane intersection {floors[-1]:,.0f} /s"
        )
    rate, floor = max(rates), max(floors)
    per_frame_ms = n / len(frames) / rate * 1000
    placed = locator.stats["placed"] // args.repeat
    print(f"frames: {len(frames)}, footprints: {n} ({placed} placed a pass), model {weights.name}")
    print(f"limit_bare_ray_per_s: {floor:.0f} /s")
    print(f"ratio_to_bare_ray: {rate / floor:.3f}")
    print(f"detect_ms_per_frame: {detect_ms:.1f} ms")
    print(f"projection_ms_per_frame: {per_frame_ms:.2f} ms ({n / len(frames):.0f} boxes a frame)")
    print(f"share_of_detect: {per_frame_ms / detect_ms:.4f}")
    print(f"placements_per_s: {rate:.0f} /s")


if __name__ == "__main__":
    main()
