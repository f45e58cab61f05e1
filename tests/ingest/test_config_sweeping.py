"""devices.yaml `sweeping`: the shipped sweeper loads; each broken copy names file, line, field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ingest.config import ConfigError, load_config
from tests.conftest import REPO

TEXT = (REPO / "devices.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def problems(tmp_path: Path, old: str, new: str) -> tuple[list[str], str]:
    assert TEXT.count(old) == 1, old
    text = TEXT.replace(old, new)
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems, text


def test_the_shipped_sweeper_loads() -> None:
    sweeper = load_config(REPO / "devices.yaml").device("gps-sweeper-03")
    assert sweeper is not None and sweeper.sweeping is not None
    assert [s.id for s in sweeper.sweeping.segments] == ["wanping-w", "xietu-n", "tianping-e"]
    assert sweeper.sweeping.segments[0].deadline == dt.time(7, 30)
    assert sweeper.sweeping.speed_kmh == (3.0, 20.0)


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "line: [[121.4335, 31.1925], [121.4335, 31.1945]]",
            "line: [[121.4335, 31.1925]]",
            "line: [[121.4335, 31.1925]]",
            "sweeping.segments[0].line: a segment line needs at least 2 points, got 1",
        ),
        (
            "deadline: '07:30'",
            "deadline: 7:30",
            "deadline: 7:30",
            "quote the time of day, e.g. deadline: '09:30'",
        ),
        (
            "deadline: '08:00'",
            "deadline: '25:00'",
            "deadline: '25:00'",
            "sweeping.segments[1].deadline",
        ),
        (
            "speed_kmh: [3, 20]",
            "speed_kmh: [20, 3]",
            "speed_kmh: [20, 3]",
            "speed_kmh [20.0, 3.0] must be [min, max]",
        ),
        (
            "{id: xietu-n,",
            "{id: wanping-w,",
            "sweeping:  ",
            "segment id 'wanping-w' appears twice (first at segments[0])",
        ),
        (
            "min_fraction: 0.8 ",
            "min_fraction: 1.5 ",
            "min_fraction: 1.5",
            "sweeping.min_fraction: Input should be less than or equal to 1",
        ),
        (
            "passes: 1, deadline: '08:30'",
            "passes: 0, deadline: '08:30'",
            "passes: 0",
            "sweeping.segments[2].passes",
        ),
    ],
)
def test_a_broken_sweeping_section_names_file_line_and_field(
    tmp_path: Path, old: str, new: str, needle: str, expected: str
) -> None:
    found, text = problems(tmp_path, old, new)
    assert len(found) == 1, found
    [problem] = found
    assert expected in problem, problem
    line = line_of(text, needle) if needle != "sweeping:  " else line_of(text, "sweeping:  ")
    assert problem.startswith(f"{tmp_path / 'devices.yaml'}:"), problem
    reported = int(problem.split(":")[1])
    assert abs(reported - line) <= 2, (reported, line, problem)


def test_sweeping_is_for_gps_devices(tmp_path: Path) -> None:
    old = "    kind: gps\n    name: Street sweeper"
    found, _ = problems(tmp_path, old, "    kind: drone\n    name: Street sweeper")
    assert any("sweeping is for gps devices, not a drone device" in p for p in found), found
