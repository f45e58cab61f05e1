from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detectors.homography import Homography
from ingest.config import ConfigError, load_config

LON0, LAT0 = 121.4373, 31.1952
M_PER_DEG_LAT = 111_195.0


def ground_truth() -> tuple[np.ndarray, callable]:
    """A camera looking down a street: a true perspective map from pixels to local metres."""
    H = cv2.getPerspectiveTransform(
        np.float32([[0, 576], [768, 576], [768, 250], [0, 250]]),
        np.float32([[-5, 0], [5, 0], [8, 40], [-8, 40]]),
    )

    def to_lonlat(x: float, y: float) -> tuple[float, float]:
        east, north = cv2.perspectiveTransform(np.float64([[[x, y]]]), H.astype(np.float64))[0, 0]
        k = M_PER_DEG_LAT * np.cos(np.radians(LAT0))
        return LON0 + east / k, LAT0 + north / M_PER_DEG_LAT

    return H, to_lonlat


def test_maps_footprints_to_lonlat_within_centimetres() -> None:
    _, truth = ground_truth()
    pixels = [(0, 576), (768, 576), (768, 250), (0, 250), (384, 400)]
    h = Homography(pixels, [truth(*p) for p in pixels])
    assert h.rms_error_m < 0.01
    for x, y in [(100, 500), (600, 300), (384, 560)]:
        lon, lat = h.to_lonlat(x, y)
        tlon, tlat = truth(x, y)
        assert abs(lon - tlon) * 95_000 < 0.05 and abs(lat - tlat) * M_PER_DEG_LAT < 0.05


def test_degenerate_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        Homography([(0, 0), (1, 0), (0, 1)], [(LON0, LAT0)] * 3)


def write_site(tmp_path: Path, device: dict) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"site": {"id": "s"}, "devices": [device]}, sort_keys=False))
    return path


def test_config_errors_name_file_line_and_field(tmp_path: Path) -> None:
    pairs = [{"pixel": [i * 10, 0], "geo": [LON0 + i * 1e-5, LAT0]} for i in range(4)]
    path = write_site(tmp_path, {"id": "cam", "kind": "camera", "homography": pairs})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "devices.yaml:" in str(caught.value)
    assert "homography" in str(caught.value) and "lie on one line" in str(caught.value)

    path = write_site(tmp_path, {"id": "g", "kind": "gps", "detect": {"weights": "x.pt"}})
    with pytest.raises(ConfigError, match=r"devices\.yaml:\d+: devices\[0\]\.detect: .*camera"):
        load_config(path)

    (tmp_path / "w.pt").write_bytes(b"")
    device = {"id": "cam", "kind": "camera", "stream": "v.avi", "detect": {"weights": "w.pt"}}
    config = load_config(write_site(tmp_path, device))
    assert config.devices[0].detect.weights == tmp_path / "w.pt"
    assert config.devices[0].stream == str(tmp_path / "v.avi")
