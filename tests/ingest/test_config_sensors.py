"""devices.yaml settings of the sensor detectors: geomagnetic tuning, GPS filters, speed limit,
route corridor. The shipped file uses them; each broken copy names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import ConfigError, GeomagSettings, GpsFilters, ZoneKind, load_config
from tests.conftest import REPO

DEMO_TEXT = (REPO / "devices.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def problems(tmp_path: Path, old: str, new: str) -> tuple[list[str], str]:
    assert DEMO_TEXT.count(old) == 1, old
    text = DEMO_TEXT.replace(old, new)
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems, text


def test_the_shipped_site_configures_its_sensors() -> None:
    config = load_config(REPO / "devices.yaml")
    truck = config.device("gps-muck-07")
    assert truck is not None and truck.route is not None and truck.filters is not None
    assert truck.speed_limit_kmh == 40 and truck.route.buffer_m == 25
    assert len(truck.route.line) >= 2
    bay = config.device("geomag-fl-01")
    assert bay is not None and bay.bay_kind is ZoneKind.FIRE_LANE
    assert bay.geomag == GeomagSettings(enter_ut=10, exit_ut=5, min_occupied_s=4, min_vacant_s=6)
    assert config.device("geomag-fl-02").geomag is None  # type: ignore[union-attr]
    assert GpsFilters().max_hdop == 5.0


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "exit_ut: 5,",
            "exit_ut: 12,",
            "geomag: {",
            "devices[4].geomag: exit_ut (12.0) must be below enter_ut (10.0)",
        ),
        (
            "min_vacant_s: 6}",
            "min_vacant_s: 6, drift_tau: 600}",
            "geomag: {",
            "devices[4].geomag.drift_tau: unknown field 'drift_tau'; did you mean 'drift_tau_s'?",
        ),
        (
            "speed_limit_kmh: 40 ",
            "speed_limit_kmh: -4 ",
            "speed_limit_kmh",
            "devices[3].speed_limit_kmh: Input should be greater than 0",
        ),
        (
            "      buffer_m: 25 ",
            "      bufer_m: 25 ",
            "bufer_m",
            "devices[3].route.bufer_m: unknown field 'bufer_m'; did you mean 'buffer_m'?",
        ),
        (
            "      line: [[121.43774, 31.19525], [121.43774, 31.19708],",
            "      line: [[121.43774, 31.19525], [221.43774, 31.19708],",
            "line: [",
            "devices[3].route.line: point [221.43774, 31.19708] is not [lon, lat] in degrees",
        ),
        (
            "filters: {max_hdop: 5,",
            "filters: {max_hdop: 0,",
            "filters:",
            "devices[3].filters.max_hdop: Input should be greater than 0",
        ),
        (
            "    bay: fire-lane-2\n",
            "    bay: fire-lane-2\n    route: {line: [[121.0, 31.0], [121.1, 31.0]]}\n",
            "route: {line",
            "devices[5].route: route is for gps devices, not a geomagnetic device",
        ),
        (
            "    format: json\n    crs: gcj02",
            "    format: json\n    bay_kind: fire_lane\n    crs: gcj02",
            "bay_kind: fire_lane\n    crs",
            "devices[2].bay_kind: bay_kind is for geomagnetic devices, not a gps device",
        ),
    ],
)
def test_broken_sensor_settings_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, needle: str, expected: str
) -> None:
    found, text = problems(tmp_path, old, new)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'devices.yaml'}:{line_of(text, needle)}: {expected}")


def test_a_route_needs_two_distinct_points(tmp_path: Path) -> None:
    found, text = problems(
        tmp_path,
        "line: [[121.43774, 31.19525], [121.43774, 31.19708], [121.44226, 31.19708], "
        "[121.44226, 31.19525]]",
        "line: [[121.43774, 31.19525], [121.43774, 31.19525]]",
    )
    assert len(found) == 1
    assert (
        f":{line_of(text, 'line: [')}: devices[3].route.line: a route line has zero length"
        in (found[0])
    )


SENSOR_DEVICE = """  - id: bin-test
    kind: sensor
    facility: bin
    metrics:
      fill_pct: {unit: "%", min: 0, max: 100}
"""


def _with_sensor(tmp_path: Path, device: str) -> Path:
    text = DEMO_TEXT.replace("devices:\n", "devices:\n" + device, 1)
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_sensor_device_declares_its_metrics(tmp_path: Path) -> None:
    config = load_config(_with_sensor(tmp_path, SENSOR_DEVICE))
    sensor = config.device("bin-test")
    assert sensor is not None and sensor.metrics is not None
    assert sensor.facility == "bin" and sensor.format == "json"
    assert sensor.metrics["fill_pct"].unit == "%" and sensor.metrics["fill_pct"].max == 100


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('    metrics:\n      fill_pct: {unit: "%", min: 0, max: 100}\n', "", "declares its"),
        ("min: 0, max: 100", "min: 100, max: 0", "min 100 must be below max 0"),
        ("fill_pct:", "Fill-Pct:", "metric name 'Fill-Pct'"),
        ("fill_pct:", "ts:", "metric name 'ts'"),
        ("kind: sensor", "kind: gps", "metrics is for sensor devices"),
    ],
)
def test_sensor_config_errors_name_the_line(tmp_path: Path, old: str, new: str, words: str) -> None:
    path = _with_sensor(tmp_path, SENSOR_DEVICE.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert words in text, text
    assert "devices.yaml:" in text
