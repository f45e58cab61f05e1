"""A real RTSP camera on loopback: GStreamer's RTSP server sending an H.264 file as RTP.

The server runs under Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0; the
venv cannot import gi) as a child process: `python3 tests/rtspkit.py FILE PORT`. It paces the
file in real time like a camera, and every client sees the same live stream (shared media).
`RtspCamera` starts it, waits until it listens, and kills it (a camera cut mid-stream).
This module imports only the standard library at the top, so both interpreters can load it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay') "
    "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
)
PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)


def unavailable() -> str | None:
    """Why no RTSP server can run here (None: it can)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing (install Debian's {PACKAGES}: `make system-deps`)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        tail = probe.stderr.strip().splitlines()[-1:] or ["no output"]
        return f"GStreamer's RTSP server is not importable ({tail[0]}): `make system-deps`"
    if probe.stdout.strip():
        return f"GStreamer elements missing: {probe.stdout.strip()} (`make system-deps`)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspCamera:
    """`rtsp://127.0.0.1:<port>/cam` serving `footage` (an H.264 MP4) until `kill()`."""

    def __init__(self, footage: Path, port: int | None = None) -> None:
        self.footage = Path(footage)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> RtspCamera:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, __file__, str(self.footage), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"RTSP server exited: {self.process.stderr.read()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"RTSP server not listening on {self.port} within {timeout_s} s")

    def kill(self) -> None:
        """Gone at once, as a camera losing power (no RTSP teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if self.process is not None:
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()


def serve(footage: str, port: int) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{footage}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    GLib.MainLoop().run()


if __name__ == "__main__":
    if len(sys.argv) != 3 or shutil.which("true") is None:
        sys.exit("usage: python3 tests/rtspkit.py FOOTAGE.mp4 PORT")
    serve(sys.argv[1], int(sys.argv[2]))
