"""A private Mosquitto process on a free loopback port, for tests, benchmarks and the demo,
and the embedded broker of `streetwatch run` (`tied=True`: it dies with its parent)."""

from __future__ import annotations

import getpass
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("streetwatch.localbroker")

_EXEC_TIED = """
import ctypes, os, sys
parent, sig, *argv = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, int(sig), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if os.getppid() != int(parent):
    sys.exit("the process that started the broker is gone")
os.execv(argv[0], argv)
"""
"""Runs between fork and Mosquitto: asks the kernel to send SIGTERM to the broker when the
thread that started it dies (so a `kill -9` of `streetwatch run` cannot leave it holding the
port), then becomes Mosquitto (same pid). A separate exec instead of `preexec_fn`, which is not
safe in a process that already runs threads. The `getppid` check closes the window in which the
parent died before the request was made. SIGTERM, not SIGKILL: Mosquitto saves its queue."""


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
    tied: bool = False
    """Die with the process that started it (PR_SET_PDEATHSIG, Linux), and leave a pid file
    `reclaim_orphan()` can find if it did not: what the embedded broker of `run` uses. The
    kernel signals when the *thread* that started the broker ends, so a tied broker is started
    from the main thread (which lives as long as the process); from another thread only the
    pid file applies."""
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def pid_path(self) -> Path:
        """`<broker pid> <pid of the process that started it>`, while a tied broker runs."""
        return self.workdir / "mosquitto.pid"

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
            "log_type subscribe",
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
        path = self.config_path
        path.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        return path

    def start(self) -> Mosquitto:
        """Start and wait for the port. A port still held by the previous run is retried."""
        config = self.write_config().resolve()
        command = [mosquitto_binary(), "-c", str(config)]
        if self.tied and sys.platform == "linux":
            if threading.current_thread() is threading.main_thread():
                parent, sig = str(os.getpid()), str(int(signal.SIGTERM))
                command = [sys.executable, "-I", "-S", "-c", _EXEC_TIED, parent, sig, *command]
            else:
                logger.warning(
                    "broker started from thread %s, not the main thread: it is not tied to "
                    "this process's life (the pid file %s still lets the next start reclaim it)",
                    threading.current_thread().name,
                    self.pid_path,
                )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self.tied:
                self._write_pid(self.process.pid)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        pass
                except OSError:
                    time.sleep(0.05)
                    continue
                if self._listening(log_size):
                    return self
                time.sleep(0.05)  # another process's broker on the port: ours fails to bind
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
        if self.tied:
            self.pid_path.unlink(missing_ok=True)
        self.process = None

    def restart(self, pause_s: float = 0.0) -> None:
        self.stop()
        time.sleep(pause_s)
        self.start()

    def _listening(self, log_size: int) -> bool:
        """This start's broker, not another test run's on the same port, took the port: its
        own log says so (a connection alone could have reached the other one)."""
        opened = f"Opening ipv4 listen socket on port {self.port}."
        return (
            self.process is not None
            and self.process.poll() is None
            and (opened in self.log()[log_size:])
        )

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def _write_pid(self, pid: int) -> None:
        temp = self.pid_path.with_suffix(".pid.tmp")
        with temp.open("w") as handle:
            handle.write(f"{pid} {os.getpid()}\n")
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(self.pid_path)

    def reclaim_orphan(self, timeout_s: float = 10.0) -> int | None:
        """Stop the broker a previous process left running on this workdir, if any.

        Only a process that is alive and is *this* broker (a mosquitto whose command line names
        this workdir's config) is touched, and only when the process that started it is no
        longer its parent (it died); a broker still held by a live process raises
        `BrokerInUse`. SIGTERM first (Mosquitto saves its queue), SIGKILL after `timeout_s`.
        Returns the pid stopped, or None when there was nothing to reclaim."""
        try:
            broker_pid, owner_pid = (int(n) for n in self.pid_path.read_text().split())
        except FileNotFoundError:
            return None
        except ValueError:
            self.pid_path.unlink(missing_ok=True)
            return None
        if not _is_broker_for(broker_pid, self.config_path.resolve()):
            self.pid_path.unlink(missing_ok=True)  # gone, or the pid now belongs to another
            return None
        if _parent_of(broker_pid) == owner_pid and owner_pid != os.getpid():
            raise BrokerInUse(
                f"the broker under {self.workdir} (pid {broker_pid}) belongs to process "
                f"{owner_pid}, which is still running"
            )
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.kill(broker_pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _alive(broker_pid):
                time.sleep(0.05)
            if not _alive(broker_pid):
                break
        else:
            raise RuntimeError(f"the orphaned broker (pid {broker_pid}) did not stop")
        self.pid_path.unlink(missing_ok=True)
        return broker_pid


class BrokerInUse(RuntimeError):
    """The workdir's broker is running for another live process."""


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    """Running (a zombie holds no port and waits only for its parent to reap it)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _parent_of(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[1]) if fields else None


def _is_broker_for(pid: int, config: Path) -> bool:
    """Whether `pid` is a live mosquitto started with `config`."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return bool(argv) and "mosquitto" in Path(argv[0]).name and str(config) in argv
