from __future__ import annotations

import functools
import http.server
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.video.sources import FileFrames, VideoSource


def test_file_frames_are_all_read_with_container_timestamps(vtest: Path) -> None:
    start = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    frames = FileFrames(vtest, "cam", start)
    assert frames.fps == pytest.approx(10.0)
    seen = [(f.index, f.ts, f.size) for f in frames]
    assert len(seen) == 795
    assert seen[0] == (0, start, (768, 576))
    assert seen[-1][1] == start + timedelta(seconds=79.4)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cam: video file not found"):
        FileFrames(tmp_path / "nope.avi", "cam")


def test_slow_consumer_gets_the_latest_frame_and_no_backlog(vtest: Path) -> None:
    source = VideoSource("cam", str(vtest), realtime=False)
    source.start()
    try:
        taken = []
        while (frame := source.read(timeout=10)) is not None:
            taken.append(frame.index)
            time.sleep(0.02)
    finally:
        source.stop()
    assert source.ended
    assert source.stats.frames == 795
    assert taken == sorted(taken) and len(set(taken)) == len(taken)
    assert len(taken) < 795 and source.stats.dropped == 795 - len(taken)
    assert taken[-1] == 794


def test_real_time_file_is_paced_and_stamped_by_position(vtest: Path) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    buffered = []
    source = VideoSource("cam", str(vtest), clock=lambda: t0, on_frame=buffered.append)
    started = time.monotonic()
    source.start()
    try:
        while len(buffered) < 15:
            time.sleep(0.05)
    finally:
        source.stop()
    assert time.monotonic() - started >= 1.3  # 10 fps: 15 frames take ~1.4 s
    assert [f.ts for f in buffered[:3]] == [t0 + timedelta(seconds=i / 10) for i in range(3)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_http_stream_that_goes_away_is_retried_with_backoff(vtest: Path) -> None:
    handler = functools.partial(_Quiet, directory=str(vtest.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = VideoSource(
        "cam",
        f"http://127.0.0.1:{port}/{vtest.name}",
        min_delay_s=0.1,
        max_delay_s=0.4,
        timeout_s=2,
    )
    assert source.live
    source.start()
    try:
        first = source.read(timeout=15)
        assert first is not None and first.size == (768, 576)
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + 30
        while source.stats.failures < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert source.stats.opens >= 3  # it keeps trying, the thread did not die
        assert source.stats.last_error in ("cannot open", "stream stopped delivering")
    finally:
        source.stop()
