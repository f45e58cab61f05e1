"""A drone's camera on real footage (drone-car-park.mp4) with the real COCO model and the
telemetry written for the clip: parked cars placed on the ground inside the car park's
geographic zone, each observation saying where the car was (± metres) and where the drone was;
frames without telemetry are refused and counted, not placed."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from shapely.geometry import Point

from detectors.camera import CameraPipeline
from detectors.geofence import LocalProjection
from ingest.config import SiteConfig, load_config
from ingest.readings import DroneTelemetry
from streetwatch.scenario_drone import FLIGHTS, footage_telemetry
from tests.assets import shared_asset
from tests.conftest import REPO

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def drone_site(tmp_path_factory: pytest.TempPathFactory) -> SiteConfig:
    footage = shared_asset("footage/drone-car-park.mp4")
    weights = shared_asset("models/yolov8n_int8_640.tflite")
    doc = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))
    drone = next(d for d in doc["devices"] if d["id"] == "drone-02")
    drone["stream"] = str(footage)
    drone["detect"]["weights"] = str(weights)
    doc["devices"] = [drone]
    doc["merchants"] = []
    doc["storage"] = {"root": str(tmp_path_factory.mktemp("var"))}
    path = tmp_path_factory.mktemp("site") / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return load_config(path)


def feed(camera: CameraPipeline, config: SiteConfig, skip_until_s: float) -> None:
    for message in footage_telemetry(config, duration_s=22, start=START):
        if message.at_s < skip_until_s:
            continue
        data = json.loads(message.payload)
        camera.ground.telemetry(  # type: ignore[union-attr]
            datetime.fromisoformat(data["ts"]),
            DroneTelemetry(
                data["lat"], data["lon"], data["alt_m"], data["heading"], data["gimbal_pitch"]
            ),
        )


def test_parked_cars_are_placed_inside_the_car_parks_zone(drone_site: SiteConfig) -> None:
    device = drone_site.device("drone-02")
    assert device is not None
    camera = CameraPipeline(device, drone_site, lambda _: None)
    feed(camera, drone_site, skip_until_s=4.0)  # the first 4 s of the flight were not received
    observations = camera.run_file(start=START)

    stats = camera.stats.as_dict()
    # 2 frames a second: the 8 frames of the first 4 s (less the one 1 s from the first
    # sample) have no pose and are refused as a whole
    assert stats["ground_refused_frames"] >= 6
    assert stats["ground_refused_stale_telemetry"] == stats["ground_refused_frames"]
    assert stats["ground_placed"] > 100

    zone = device.zones[0]
    local = LocalProjection.around(zone.polygon)
    assert local is not None
    area = local.polygon(zone.polygon)
    inside = [o for o in observations if o.zone_id == zone.id]
    cars = {o.subject_id for o in inside if o.subject == "car"}
    assert len(cars) >= 3, {o.subject for o in inside}
    first_seen = min(o.first_seen for o in inside)
    assert first_seen >= START + timedelta(seconds=3.0)  # nothing entered before telemetry

    flight = FLIGHTS["drone-car-park.mp4"]
    for obs in inside:
        assert obs.location is not None
        ground, drone = obs.attributes["ground"], obs.attributes["drone"]
        assert (ground["lon"], ground["lat"]) == pytest.approx(
            (obs.location.lon, obs.location.lat), abs=1e-6
        )
        # inside the zone, give or take the hysteresis margin (2 m) for later updates
        assert area.buffer(2.5).contains(Point(local.xy(obs.location.lon, obs.location.lat)))
        # 30-60 m away at 25-35° below the horizon, 25 m up: about 3-5 m (1 σ)
        assert 2.0 < ground["uncertainty_m"] < 6.0
        assert 25.0 < ground["ground_range_m"] < 70.0
        assert ground["error_ellipse_m"][0] >= ground["error_ellipse_m"][1]
        assert drone["alt_m"] == flight.alt_m and drone["gimbal_pitch_deg"] == -16.0
        assert abs(drone["lat"] - flight.lat) < 2e-5 and abs(drone["lon"] - flight.lon) < 3e-5

    # a parked car stays put on the ground while the drone drifts: its placements agree to
    # within a few times their 1-σ uncertainty (box jitter, the drift's phase)
    by_car: dict[str, list[tuple[float, float]]] = {}
    for obs in inside:
        assert obs.location is not None
        by_car.setdefault(obs.subject_id, []).append(local.xy(obs.location.lon, obs.location.lat))
    spread = {
        car: max(math.dist(p, q) for p in points for q in points) for car, points in by_car.items()
    }
    assert max(spread.values()) < 6.0, spread
