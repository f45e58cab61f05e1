"""devices.yaml's `fov` section of a drone camera: the shipped drone uses it; each broken copy
names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import ConfigError, load_config
from tests.conftest import REPO

DEMO_TEXT = (REPO / "devices.yaml").read_text(encoding="utf-8")
_AT = DEMO_TEXT.index("    fov:  ")
FOV = DEMO_TEXT[_AT : DEMO_TEXT.index("      sigma:", _AT)]
"""The shipped drone's `fov:` line and its field of view and staleness lines."""


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def problems(tmp_path: Path, new: str) -> tuple[list[str], str]:
    assert DEMO_TEXT.count(FOV) == 1
    text = DEMO_TEXT.replace(FOV, new)
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems, text


def test_the_shipped_drone_has_a_field_of_view() -> None:
    drone = load_config(REPO / "devices.yaml").device("drone-02")
    assert drone is not None and drone.fov is not None and drone.detect is not None
    assert drone.fov.horizontal_fov_deg == 82 and drone.fov.max_staleness_s == 1.0
    assert all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in drone.zones[0].polygon)


@pytest.mark.parametrize(
    ("new", "needle", "field", "why"),
    [
        (
            "    fov:\n      hfov_deg: 200\n",
            "hfov_deg: 200",
            "fov.hfov_deg",
            "less than 179",
        ),
        (
            "    fov:\n      focal_mm: 4.5\n",
            "focal_mm: 4.5",
            "fov",
            "focal_mm with sensor_width_mm",
        ),
        (
            "    fov:\n      hfov_deg: 82\n      max_staleness_s: -1\n",
            "max_staleness_s: -1",
            "fov.max_staleness_s",
            "greater than 0",
        ),
    ],
)
def test_a_broken_fov_names_file_line_and_field(
    tmp_path: Path, new: str, needle: str, field: str, why: str
) -> None:
    found, text = problems(tmp_path, new)
    assert len(found) == 1, found
    where = f"{tmp_path / 'devices.yaml'}:{line_of(text, needle)}: "
    assert found[0].startswith(where) and f".{field}: " in found[0] and why in found[0], found


def test_a_drone_that_detects_needs_its_field_of_view(tmp_path: Path) -> None:
    start = DEMO_TEXT.index(FOV)
    end = DEMO_TEXT.index("    zones:", start)
    path = tmp_path / "devices.yaml"
    path.write_text(DEMO_TEXT[:start] + DEMO_TEXT[end:], encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:{line_of(DEMO_TEXT, '  - id: drone-02')}: ")
    assert "needs `fov`" in problem
