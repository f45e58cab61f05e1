"""Malformed video: a camera whose file is random bytes, empty, text named .mp4, a header zeroed
out, or vtest.avi cut after 100 KB. The reader says what is wrong with the file, counts a
failure, retries with backoff (or ends a file it has read), and never takes the process down:
a live `streetwatch run` with two such cameras keeps journaling the street's sensor readings,
answers /healthz, and reports the failures on /metrics."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ingest.video.sources import FileFrames, VideoSource
from streetwatch.localbroker import Mosquitto, free_port
from tests.conftest import REPO
from tests.faults.conftest import Reliability
from tests.runkit import FAULTS, demo_site, journaled, publish, scenario, wait_until

VTEST = REPO / "var" / "footage" / "vtest.avi"
WEIGHTS = REPO / "var" / "models" / "person-yolov8s.pt"


def malformed(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what last_error must say)."""
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} is missing: run `make footage`")
    folder.mkdir(parents=True, exist_ok=True)
    footage = VTEST.read_bytes()
    noise = random.Random(20261204)
    files = {
        # seeded: about one random 300 KB file in 40 happens to probe as a playable stream
        "random bytes named .avi": ("random.avi", noise.randbytes(300_000), "does not recognise"),
        "random bytes named .mp4": ("random.mp4", noise.randbytes(300_000), "does not recognise"),
        "empty file": ("empty.avi", b"", "the file is empty"),
        "text named .mp4": ("text.mp4", b"not a video\n" * 10, "does not recognise"),
        "header zeroed": ("zeroed.avi", bytes(4096) + footage[4096:], "does not recognise"),
        "first 100 KB of vtest.avi": ("cut.avi", footage[:100_000], "truncated or corrupt"),
    }
    out = {}
    for name, (file, data, why) in files.items():
        (folder / file).write_bytes(data)
        out[name] = (folder / file, why)
    out["missing file"] = (folder / "missing.avi", "no such file")
    return out


def test_malformed_video_files_are_named_counted_and_survived(
    tmp_path: Path, reliability: Reliability
) -> None:
    wrong: list[tuple[str, object]] = []
    cases = malformed(tmp_path / "video")
    for name, (path, why) in cases.items():
        source = VideoSource("cam-bad", str(path), realtime=False, min_delay_s=0.05)
        source.start()
        deadline = time.monotonic() + 20
        while source.stats.failures < 2 and not source.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = source._thread is not None and source._thread.is_alive()
        started = time.monotonic()
        source.stop()
        stats = source.stats
        if stats.failures < 1 or why not in stats.last_error:
            wrong.append((name, stats))
        elif not (alive or source.ended):
            wrong.append((name, "reader thread died"))
        elif time.monotonic() - started > 5:
            wrong.append((name, "stop() hung"))
        if not source.ended and name != "first 100 KB of vtest.avi":
            try:
                FileFrames(path, "cam-bad")
                wrong.append((name, "FileFrames opened it"))
            except (ValueError, FileNotFoundError) as exc:
                if why not in str(exc) and name != "missing file":
                    wrong.append((name, f"FileFrames: {exc}"))
    reliability.record(
        "bad input", "malformed video file", tried=len(cases), lost=len(wrong), files=list(cases)
    )
    assert not wrong, wrong


def test_a_whole_file_is_not_a_failure(tmp_path: Path) -> None:
    """The truncation check does not fire on the intact file (the check above can fail)."""
    if not VTEST.is_file():
        pytest.fail(f"{VTEST} is missing: run `make footage`")
    source = VideoSource("cam-ok", str(VTEST), realtime=False)
    source.start()
    wait_until(lambda: source.ended, 60, "vtest.avi to be read to its end")
    source.stop()
    assert source.stats.failures == 0 and source.stats.frames > 700, source.stats


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("streetwatch_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_run_with_malformed_camera_files_keeps_running(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    if not WEIGHTS.is_file():
        pytest.fail(f"{WEIGHTS} is missing: run `make footage`")
    cases = malformed(tmp_path / "video")
    config = demo_site(tmp_path)
    doc = yaml.safe_load(config.read_text())
    camera = next(d for d in doc["devices"] if d["kind"] == "camera")
    camera["stream"] = str(cases["random bytes named .mp4"][0])
    camera["detect"]["weights"] = str(WEIGHTS)
    second = {**camera, "id": "cam-cut-01", "stream": str(cases["first 100 KB of vtest.avi"][0])}
    doc["devices"].insert(1, second)
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    var = tmp_path / "var"
    messages = scenario(config, duration_s=180.0, seed=5)
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streetwatch",
                "run",
                "-c",
                str(config),
                "--broker",
                mosquitto.url,
                "--loop-video",
                "--http-port",
                str(port),
                "--status-every",
                "1",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:

            def started() -> bool:
                assert proc.poll() is None, log.read_text()[-3000:]
                return "running:" in log.read_text()

            wait_until(started, 90, "streetwatch run with cameras to start")
            report = publish(messages, mosquitto)
            assert report.acked == len(messages)
            readings = len(messages) - FAULTS
            wait_until(lambda: journaled(var) >= readings, 60, "the sensor readings journaled")
            key = 'streetwatch_cameras_source_failures_total{kind=""}'
            wait_until(lambda: _metrics(port).get(key, 0) >= 3, 60, "camera failures counted")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as page:
                health = (page.status, json.loads(page.read()))
            metrics = _metrics(port)
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
    text = log.read_text()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    lost = readings - journaled(var)
    named = [
        "random.mp4 unavailable (cannot open: OpenCV/FFmpeg does not recognise" in text,
        "cut.avi unavailable (file is truncated or corrupt" in text,
    ]
    reliability.record(
        "bad input",
        "malformed video file (live run)",
        tried=2,
        lost=lost + named.count(False) + (0 if alive and health[0] == 200 else 1),
        failures_counted=metrics.get(key),
        readings=readings,
    )
    assert alive and proc.returncode == 0, text[-3000:]
    assert health[0] == 200 and health[1]["ok"], health
    assert lost == 0
    assert all(named), text[-3000:]
    assert metrics[key] >= 3
    assert summary["ingest"]["dead_letters"] == FAULTS
    assert "Traceback" not in text, text[-3000:]
