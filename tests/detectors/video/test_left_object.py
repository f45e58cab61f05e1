"""Left objects on real footage with the real person model: the bag and the backpack of the
ABODA clips become goods (and a cross-door-trading case through the real rules engine), while
people walking and standing, parked cars and a drifting drone give none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from detectors.camera import CameraPipeline
from detectors.observation import Observation
from detectors.yolo import YoloDetector
from ingest.config import SiteConfig
from rules.engine import Engine
from rules.loading import load_rules
from tests.assets import shared_asset

START = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
"""10:00 in Asia/Shanghai, inside the rule's business hours."""
PERSON_CLASSES = {"Normal": "person", "Fall": "person"}
FPS = 5

BAG_CLIP = "footage/aboda-video4-sidewalk-bag-left.avi"
BAG_DROP_S = 13.3
"""Frame ~400 of 30 fps: the bag touches the ground (looked at frame by frame)."""
BAG_BOX = (455, 360, 512, 418)
"""Where the bag stands beside the cabinet, by hand."""
CABINET_SHOPFRONT = [(430, 230), (720, 230), (720, 480), (430, 480)]
"""The painted utility cabinet and the strip of pavement before it."""

BACKPACK_CLIP = "footage/aboda-video1-corridor-backpack-left.mp4"
BACKPACK_DROP_S = 11.3
"""Frame ~340: the backpack is on the floor and let go."""
BACKPACK_BOX = (125, 320, 192, 382)
CORRIDOR_FLOOR = [(0, 300), (150, 250), (640, 250), (640, 420), (0, 420)]

VTEST_SIDEWALKS = [
    [(480, 130), (768, 130), (768, 576), (480, 576)],
    [(0, 330), (480, 250), (480, 420), (0, 470)],
]


def site(weights: Path, stream: Path, zones: list[tuple[str, list]]) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "s", "timezone": "Asia/Shanghai"},
            "merchants": [
                {
                    "id": "m1",
                    "name": "Shop",
                    "licence_no": "X",
                    "shopfront": [[121.4373, 31.1952], [121.4374, 31.1952], [121.4374, 31.1953]],
                }
            ],
            "devices": [
                {
                    "id": "cam-1",
                    "kind": "camera",
                    "stream": str(stream),
                    "location": {"lat": 31.1952, "lon": 121.4373},
                    "detect": {
                        "weights": str(weights),
                        "classes": PERSON_CLASSES,
                        "imgsz": 320,
                        "fps": FPS,
                        "redetect_s": 2.0,
                    },
                    "zones": [
                        {
                            "id": f"{kind}-{i}",
                            "kind": kind,
                            "polygon": polygon,
                            **({"merchant": "m1"} if kind == "shopfront" else {}),
                        }
                        for i, (kind, polygon) in enumerate(zones)
                    ],
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def detector(person_pt: Path) -> YoloDetector:
    return YoloDetector(person_pt, imgsz=320, conf=0.1, classes=PERSON_CLASSES)


def run(
    detector: YoloDetector, clip: Path, zones: list[tuple[str, list]], weights: Path
) -> tuple[CameraPipeline, SiteConfig, list[Observation]]:
    config = site(weights, clip, zones)
    seen: list[Observation] = []
    pipeline = CameraPipeline(config.devices[0], config, seen.append, detector=detector)
    pipeline.run_file(start=START)
    return pipeline, config, seen


def goods(observations: list[Observation]) -> list[Observation]:
    return [o for o in observations if o.subject in ("goods", "stall")]


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Share of `a` inside `b`."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / ((a[2] - a[0]) * (a[3] - a[1]))


@pytest.fixture(scope="module")
def bag_run(detector: YoloDetector, person_pt: Path):
    return run(detector, shared_asset(BAG_CLIP), [("shopfront", CABINET_SHOPFRONT)], person_pt)


def test_the_bag_left_beside_the_cabinet_is_goods_after_it_is_put_down(bag_run) -> None:
    pipeline, _, seen = bag_run
    found = goods(seen)
    assert {o.subject_id for o in found} == {"o0"}, found
    first = found[0]
    assert first.state == "enter" and first.subject == "goods"
    assert first.first_seen >= START + timedelta(seconds=BAG_DROP_S)
    assert first.frame is not None and overlap(first.frame.box, BAG_BOX) > 0.8
    assert first.attributes["track_id"] >= 1_000_000_000
    assert first.attributes["merchant"] == "m1"
    dwell = [o.dwell_s for o in found]
    assert dwell == sorted(dwell) and found[-1].state == "exit"  # the clip ended, not the bag
    assert found[-1].last_seen >= START + timedelta(seconds=38)
    assert pipeline.left is not None and pipeline.left.stats.frames == pipeline.stats.analysed


def test_the_bag_opens_a_cross_door_trading_case_on_the_bag_not_the_man(
    bag_run, tmp_path: Path
) -> None:
    _, config, seen = bag_run
    rule = yaml.safe_load(Path("rules/catalog/cross-door-trading.yaml").read_text())
    rule["condition"]["dwell"] = "5s"
    (tmp_path / "cross-door-trading.yaml").write_text(yaml.safe_dump(rule, allow_unicode=True))
    engine = Engine(load_rules(tmp_path, config), config)
    cases = []
    for observation in sorted(seen, key=lambda o: o.last_seen):
        cases += engine.process(observation)
    cases += engine.advance(max(o.last_seen for o in seen) + timedelta(seconds=30))
    [case] = cases
    assert case.rule_id == "cross-door-trading" and case.party == "m1"
    assert case.subject == "goods" and case.subject_id == "o0"
    assert case.opened_at >= START + timedelta(seconds=BAG_DROP_S + 5)
    assert all(o.subject == "goods" for o in case.observations)


def test_the_backpack_left_in_the_corridor_is_goods(detector, person_pt: Path) -> None:
    _, _, seen = run(
        detector, shared_asset(BACKPACK_CLIP), [("sidewalk", CORRIDOR_FLOOR)], person_pt
    )
    found = goods(seen)
    assert {o.subject_id for o in found} == {"o0"}, found
    assert found[0].first_seen >= START + timedelta(seconds=BACKPACK_DROP_S)
    assert found[0].frame is not None and overlap(found[0].frame.box, BACKPACK_BOX) > 0.8


def test_people_walking_and_standing_in_the_plaza_are_no_goods(
    detector, vtest: Path, person_pt: Path
) -> None:
    pipeline, _, seen = run(
        detector, vtest, [("sidewalk", polygon) for polygon in VTEST_SIDEWALKS], person_pt
    )
    assert any(o.subject == "person" for o in seen)
    assert goods(seen) == []
    assert pipeline.left is not None and pipeline.left.stats.relearned == {}


@pytest.mark.parametrize(
    ("clip", "size"),
    [
        ("footage/intel-person-bicycle-car.gif", (480, 270)),
        ("footage/drone-car-park.mp4", (768, 432)),
    ],
)
def test_parked_cars_and_a_drifting_drone_are_no_goods(
    detector, person_pt: Path, clip: str, size: tuple[int, int]
) -> None:
    w, h = size
    pipeline, _, seen = run(
        detector, shared_asset(clip), [("sidewalk", [(0, 0), (w, 0), (w, h), (0, h)])], person_pt
    )
    assert goods(seen) == []
    if "drone" in clip:
        assert pipeline.left is not None and pipeline.left.stats.relearned.get("camera_moved")
