"""A live camera stream cut and resumed: FFmpeg serves var/footage/vtest.avi as a live MPEG-TS
stream over HTTP (real time, looping) to the demo camera of a `streetwatch run` that also
ingests the simulated street; the server is killed for several seconds and started again. The
process stays up, the loss and the reconnect are logged and counted on /metrics, frames and
camera observations flow again, the journal and case store pass SQLite's integrity check, every
reading is journaled and every package verifies.

The frames the camera sent while the stream was cut were never captured: they are reported as
`frames_not_captured` (source offline), apart from `lost` (data the box had and then lost)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
import yaml

from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.simulate import PublishReport
from tests.conftest import REPO, market_site_text
from tests.faults.conftest import Reliability
from tests.runkit import (
    FAULTS,
    RunProcess,
    account,
    all_analysed,
    publish,
    query,
    scenario,
    settled,
    wait_until,
)

VTEST = REPO / "var" / "footage" / "vtest.avi"
WEIGHTS = REPO / "var" / "models" / "person-yolov8s.pt"
CAMERA = "cam-market-01"


class StreamServer:
    """FFmpeg as a live camera: vtest.avi at its own frame rate, looping, H.264 in MPEG-TS over
    HTTP on a fixed port. `cut()` kills it (SIGKILL: the camera just vanishes), `resume()`
    starts a new one on the same port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def resume(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    "ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
                    "-i", str(VTEST), "-an", "-c:v", "libx264", "-preset", "ultrafast",
                    "-tune", "zerolatency", "-g", "10", "-f", "mpegts", "-listen", "1", self.url,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip

    def cut(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None


class CameraRun(RunProcess):
    """RunProcess with the cameras on (runkit's turns them off) and a rules directory."""

    def __init__(self, config: Path, broker: Mosquitto, log: Path, *extra: str) -> None:
        RunProcess.live.append(self)
        self.log = log
        self._err = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "streetwatch", "run", "-c", str(config), *extra,
                "--broker", broker.url, "--status-every", "1",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._log_start = log.stat().st_size
        wait_until(self._started, 120, "streetwatch run to start")


def camera_site(tmp_path: Path, stream: str) -> tuple[Path, Path]:
    """The shipped site with the demo camera reading `stream`; the catalog rules plus the demo
    lingering rule (a rule on the camera's observations)."""
    for needed in (VTEST, WEIGHTS):
        if not needed.is_file():
            pytest.fail(f"{needed} is missing: run `make footage`")
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / "var")}
    for device in doc["devices"]:
        if device["id"] == CAMERA:
            device["stream"] = stream
            device["detect"]["weights"] = str(WEIGHTS)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules" / "catalog", rules)
    shutil.copy(REPO / "streetwatch" / "demo_rules" / "demo-lingering.yaml", rules)
    return path, rules


def ops_up(port: int) -> bool:
    """The ops endpoint starts just after `running:` is logged."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
            return True
    except OSError:
        return False


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        found = {}
        for line in page.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                found[name.split("{")[0]] = float(value)
        return found


def camera(port: int, name: str) -> float:
    return metrics(port).get(f"streetwatch_cameras_{name}", 0.0)


def camera_observations(var: Path) -> int:
    """The newest journal seq of a camera observation (0: none yet)."""
    rows = query(
        var / "journal.sqlite",
        f"SELECT coalesce(max(seq), 0) FROM observations WHERE device_id = '{CAMERA}'",
    )
    return rows[0][0]


def integrity(path: Path) -> str:
    return query(path, "PRAGMA integrity_check")[0][0]


def cut_and_resume(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability, cuts: int, seed: int
) -> None:
    rng = random.Random(seed)
    capture = cv2.VideoCapture(str(VTEST))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    server = StreamServer(tmp_path / "ffmpeg.log")
    server.resume()
    config, rules = camera_site(tmp_path, server.url)
    var = tmp_path / "var"
    port = free_port()
    run = CameraRun(config, mosquitto, tmp_path / "run.log", "-r", str(rules), "--http-port",
                    str(port))  # fmt: skip
    wait_until(lambda: ops_up(port), 30, "the ops endpoint")
    messages = scenario(config, duration_s=900.0 * cuts, seed=seed)
    reports: list[PublishReport] = []
    publisher = threading.Thread(
        target=lambda: reports.append(publish(messages, mosquitto)), daemon=True
    )
    try:
        wait_until(lambda: camera_observations(var) > 0, 90, "the first camera observations")
        publisher.start()
        offline: list[float] = []
        for cut in range(cuts):
            failures = camera(port, "source_failures_total")
            server.cut()
            cut_at = time.monotonic()
            wait_until(
                lambda n=failures: camera(port, "source_failures_total") > n,
                30,
                "the camera to notice the cut",
            )
            wait_until(
                lambda: camera(port, "source_connected_total") == 0, 10, "the camera offline"
            )
            time.sleep(max(0.0, cut_at + rng.uniform(4.0, 8.0) - time.monotonic()))
            assert run.proc.poll() is None, run.log_text()[-3000:]
            offline.append(time.monotonic() - cut_at)
            seen = camera_observations(var)
            frames = camera(port, "source_frames_total")
            server.resume()
            wait_until(
                lambda c=cut: camera(port, "source_reconnects_total") > c,
                60,
                "the camera to reconnect",
            )
            wait_until(
                lambda f=frames: camera(port, "source_frames_total") > f + 3 * fps,
                30,
                "frames flowing again",
            )
            wait_until(lambda s=seen: camera_observations(var) > s, 60, "camera observations again")
        publisher.join(120)
        assert reports and reports[0].acked == len(messages), reports
        wait_until(lambda: all_analysed(var, len(messages) - FAULTS), 90, "every reading")
        wait_until(lambda: settled(var), 60, "every case packaged")
        final = metrics(port)
        run.terminate()
    finally:
        server.cut()
    log = run.log_text()

    books = account(config, var, len(messages) - FAULTS)
    checks = {p.name: integrity(p) for p in (var / "journal.sqlite", var / "cases.sqlite")}
    corrupt = sum(result != "ok" for result in checks.values())
    offline_s = final["streetwatch_cameras_source_offline_s_total"]
    reliability.record(
        "fault",
        "camera stream cut and resumed",
        tried=cuts,
        lost=books.lost + books.cases_doubled + corrupt,
        cut_s=[round(s, 1) for s in offline],
        source_offline_s=offline_s,
        frames_not_captured=round(offline_s * fps),
        frames_not_captured_note="frames not captured during the cut (source offline)",
        of_which_in_reconnect_backoff=max(0, round((offline_s - sum(offline)) * fps)),
        source_frames=final["streetwatch_cameras_source_frames_total"],
        source_reconnects=final["streetwatch_cameras_source_reconnects_total"],
        source_failures=final["streetwatch_cameras_source_failures_total"],
        frames_analysed=final["streetwatch_cameras_analysed_total"],
        camera_observations=final["streetwatch_cameras_observations_total"],
        integrity=checks,
        **books.as_dict(),
    )
    assert final["streetwatch_cameras_source_reconnects_total"] == cuts
    assert offline_s >= sum(offline) * 0.9, (offline_s, offline)
    assert log.count(f"{CAMERA}: video {server.url} reconnected after") == cuts, log[-3000:]
    assert f"{CAMERA}: video {server.url} unavailable" in log
    assert checks == {"journal.sqlite": "ok", "cases.sqlite": "ok"}
    assert books.readings_lost == 0 and books.dead_letters_kept == FAULTS, books
    assert books.cases_doubled == 0, books
    assert books.packages_verified == books.cases > 0, books
    assert books.verify_ok, books.verify_output


def test_camera_stream_cut_and_resumed_keeps_the_run_up(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    cut_and_resume(mosquitto, tmp_path, reliability, cuts=1, seed=7)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_camera_stream_cut_and_resumed_again_and_again(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    cut_and_resume(mosquitto, tmp_path, reliability, cuts=5, seed=19)
