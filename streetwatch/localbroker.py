"""A private Mosquitto process on a free loopback port, for tests, benchmarks and the demo."""

from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed (make test installs Debian's package)")
    return found


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port *below* the ephemeral range.

    A client reconnecting to a stopped broker on loopback can be given the broker's own port
    as its source port and connect to itself (TCP self-connect), holding the port so the
    restarted broker cannot bind it. Ports outside the ephemeral range are never handed out.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Mosquitto:
    """One broker process. `restart()` keeps the port and the persistence file."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    tls: dict[str, Path] | None = None
    tls_port: int | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if (
            "allow_anonymous" not in self.extra_config
            and "per_listener_settings" not in self.extra_config
        ):
            lines.append("allow_anonymous true")
        if self.tls:
            self.tls_port = self.tls_port or free_port()
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls['ca']}",
                f"certfile {self.tls['cert']}",
                f"keyfile {self.tls['key']}",
                "require_certificate true",
                "use_identity_as_username false",
            ]
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        return path

    def start(self) -> Mosquitto:
        """Start and wait for the port. A port still held by the previous run is retried."""
        config = self.write_config()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.05)
            else:
                break
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            self.process.stderr.close() if self.process.stderr else None
            log = self.log()[log_size:]
            if "Address already in use" not in log + err:
                raise RuntimeError(f"mosquitto exited: {err}\n{log}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mosquitto did not open port {self.port} within 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self, pause_s: float = 0.0) -> None:
        self.stop()
        time.sleep(pause_s)
        self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
