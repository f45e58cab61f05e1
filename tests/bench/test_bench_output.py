"""The benches keep their output contract: beside the headline a `limit_...` line and a
`ratio_to_...` line measured in the same run, and the last line alone `<metric>: <number>
[unit]`. The benches with a short mode are run in it (seconds each); the slow ones (models on
footage, the console) are checked in their source: the lines they print."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.assets import asset

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
LAST_LINE = re.compile(r"^(?P<metric>[a-z0-9_]+): (?P<number>-?\d+(\.\d+)?)( (?P<unit>\S+))?$")
LIMIT = re.compile(r"^limit_[a-z0-9_]+: -?\d+(\.\d+)?\b")
RATIO = re.compile(r"^ratio_to_[a-z0-9_]+: (?P<ratio>\d+(\.\d+)?)\b")


def run_bench(name: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def check_contract(lines: list[str], metric: str, unit: str | None) -> None:
    last = LAST_LINE.match(lines[-1])
    assert last, f"last line {lines[-1]!r} is not `<metric>: <number> [unit]`"
    assert (last["metric"], last["unit"]) == (metric, unit)
    limits = [line for line in lines if LIMIT.match(line)]
    ratios = [RATIO.match(line) for line in lines]
    assert limits, "no limit_... line"
    assert [r for r in ratios if r and float(r["ratio"]) > 0], "no positive ratio_to_... line"


def test_rules_bench_prints_its_bare_loop_limit() -> None:
    lines = run_bench("rules.py", "--seconds", "2", "--subjects", "400", "--repeat", "1")
    check_contract(lines, "observations_per_s", "/s")


def test_sensors_bench_prints_its_bare_loop_limit() -> None:
    lines = run_bench("sensors.py", "--duration", "60", "--fleet", "1", "--repeat", "1")
    check_contract(lines, "readings_per_s", "/s")


def test_sink_bench_prints_psql_copy_beside_the_sink() -> None:
    if not Path("/usr/lib/postgresql").is_dir() or shutil.which("psql") is None:
        pytest.skip("PostgreSQL server binaries or psql absent")
    lines = run_bench("sink.py", "--rows", "3000", "--batch", "1000")
    check_contract(lines, "rows_per_s", "/s")
    assert any(line.startswith("limit: psql \\copy gps_fixes FROM") for line in lines)


def test_plates_bench_prints_the_bare_recogniser() -> None:
    if asset("plates/crops") is None or asset("models/face_detection_yunet.onnx") is None:
        pytest.skip("the shared assets are not beside this checkout")
    lines = run_bench("plates.py", "--crops", "5")
    check_contract(lines, "plate_exact_read", "%")


SLOW = {
    "detect.py": "cameras_at_5fps",
    "tiling.py": "tiled_people_kite",
    "leftobject.py": "drop_to_observation_s",
    "accuracy.py": "map50",
    "console.py": "case_list_p99_ms",
}


def printed_prefixes(path: Path) -> list[str]:
    """The literal start of every f-string/str printed, in source order."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print" and node.args:
            first = node.args[0]
            if isinstance(first, ast.JoinedStr) and first.values:
                first = first.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                out.append(first.value)
    return out


@pytest.mark.parametrize("name", sorted(SLOW))
def test_slow_bench_prints_limit_and_ratio_beside_its_headline(name: str) -> None:
    prefixes = printed_prefixes(BENCH / name)
    assert any(p.startswith("limit_") for p in prefixes), name
    assert any(p.startswith("ratio_to_") for p in prefixes), name
    assert f"{SLOW[name]}: " in prefixes, name
