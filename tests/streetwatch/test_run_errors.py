"""`streetwatch run` stops on a missing model, video file or a taken ops port with one line
naming the device or port, not a traceback (issue 13, 2.6); help texts and the status line
(2.11)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from streetwatch.localbroker import Mosquitto
from streetwatch.run_cli import run, status_line
from streetwatch.simulate import simulate
from tests.conftest import REPO
from tests.runkit import demo_site

CAMERA = "cam-market-01"


def with_camera(tmp_path: Path, **detect: str) -> Path:
    """The shipped site with the market camera's `stream` and `detect` fields replaced."""
    config = demo_site(tmp_path)
    doc = yaml.safe_load(config.read_text())
    (camera,) = [d for d in doc["devices"] if d["id"] == CAMERA]
    if "stream" in detect:
        camera["stream"] = detect.pop("stream")
    camera["detect"].update(detect)
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return config


def a_file(path: Path) -> str:
    path.write_bytes(b"\0" * 64)
    return str(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streetwatch", "run", "--duration", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_missing_weights_stop_run_with_one_line_naming_device_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "nowhere.pt"
    video = a_file(tmp_path / "clip.avi")
    config = with_camera(tmp_path, weights=str(missing), stream=video)
    result = run_cli("-c", str(config))
    line = last_line(result)
    assert line.startswith("Error: ") and line.endswith(
        f"device {CAMERA}: YOLO weights {missing}: not found"
    )
    assert "devices[0].detect.weights" in line
    assert not (tmp_path / "var" / "broker" / "mosquitto.pid").exists()  # stopped before it


def test_missing_video_file_stops_run_with_one_line(tmp_path: Path) -> None:
    weights = a_file(tmp_path / "model.pt")
    missing = tmp_path / "footage" / "gone.avi"
    config = with_camera(tmp_path, weights=weights, stream=str(missing))
    result = run_cli("-c", str(config))
    line = last_line(result)
    assert line.startswith("Error: ") and line.endswith(
        f"device {CAMERA}: video file {missing}: not found"
    )


def test_every_missing_file_is_listed_before_the_error_line(tmp_path: Path) -> None:
    config = with_camera(tmp_path, weights=str(tmp_path / "a.pt"), stream=str(tmp_path / "b.avi"))
    result = run_cli("-c", str(config))
    assert last_line(result) == "Error: 2 problem(s), see above"
    assert f"device {CAMERA}: YOLO weights {tmp_path / 'a.pt'}: not found" in result.stderr
    assert f"device {CAMERA}: video file {tmp_path / 'b.avi'}: not found" in result.stderr


def test_no_cameras_does_not_need_the_camera_files(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = with_camera(tmp_path, weights=str(tmp_path / "a.pt"), stream=str(tmp_path / "b.avi"))
    result = run_cli("-c", str(config), "--no-cameras", "--broker", mosquitto.url)
    assert result.returncode == 0, result.stderr


def test_weights_the_detector_refuses_stop_run_with_one_line(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    weights = a_file(tmp_path / "model.txt")
    video = a_file(tmp_path / "clip.avi")
    config = with_camera(tmp_path, weights=weights, stream=video)
    result = run_cli("-c", str(config), "--broker", mosquitto.url)
    line = last_line(result)
    assert line.startswith("Error: could not start: ") and weights in line


def test_http_port_in_use_stops_run_with_one_line_naming_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = demo_site(tmp_path)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_cli(
            "-c",
            str(config),
            "--no-cameras",
            "--broker",
            mosquitto.url,
            "--http-port",
            str(port),
        )
    line = last_line(result)
    where = f"console (pages, /api, /metrics, /healthz) on 127.0.0.1:{port}"
    assert line.startswith(f"Error: {where}: ")
    assert line.endswith("choose another --http-port")


def test_status_every_and_seed_have_help() -> None:
    runner = CliRunner()
    run_help = runner.invoke(run, ["--help"], terminal_width=200)
    assert run_help.exit_code == 0
    (line,) = [line for line in run_help.output.splitlines() if "--status-every" in line]
    assert "Seconds between status lines" in line
    simulate_help = runner.invoke(simulate, ["--help"], terminal_width=200)
    (line,) = [line for line in simulate_help.output.splitlines() if "--seed" in line]
    assert "Random seed" in line


def stages(**feed: float) -> dict[str, dict[str, float]]:
    return {
        "ingest": {"messages_committed": 10, "dead_letters": 1},
        "cameras": {},
        "pipeline": {"observations": 3, "cases_opened": 1, "packages": 1},
        "feed": {"feed_backlog": 0, **feed},
    }


def test_status_line_says_feed_off_without_a_feed() -> None:
    line = status_line(stages(), {}, 1.0, feed=False)
    assert "feed off" in line and "delivered" not in line
    assert "delivered 2" in status_line(stages(http_delivered=2), {}, 1.0, feed=True)


def test_whip_port_in_use_stops_run_with_one_line(mosquitto: Mosquitto, tmp_path: Path) -> None:
    from tests.streetwatch.test_run_pushed_video import site

    config, rules = site(tmp_path, "webrtc")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        command = ["-c", str(config), "-r", str(rules), "--broker", mosquitto.url]
        command += ["--whip-port", str(port), "--duration", "5"]
        result = subprocess.run(
            [sys.executable, "-m", "streetwatch", "run", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "STREETWATCH_WHIP_TOKEN": "a-long-enough-whip-token"},
        )
    line = last_line(result)
    assert f"127.0.0.1:{port}" in line or f"'127.0.0.1', {port}" in line, line
