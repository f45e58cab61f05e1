"""The embedded broker does not outlive `streetwatch run` (issue 13, 2.4), and the shipped
embedded port does not clash with the Mosquitto a machine already runs (2.5)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from ingest.config import load_config
from streetwatch.embedded import EmbeddedBrokerError, start_embedded_broker
from streetwatch.localbroker import Mosquitto, free_port
from tests.conftest import REPO
from tests.runkit import RunProcess, demo_site, wait_until


def embedded_site(tmp_path: Path, port: int) -> Path:
    config = demo_site(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["broker"] = {"url": "embedded", "embedded_port": port, "client_id": "sw-embedded"}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return config


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it holds no port)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def broker_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if "mosquitto" in p.name()]


def test_kill_9_of_run_takes_its_embedded_broker_with_it_and_the_restart_comes_up(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = embedded_site(tmp_path, port)
    log = tmp_path / "run.log"
    run = RunProcess(config, None, log)
    (child,) = broker_children(run.proc.pid)
    assert (tmp_path / "var" / "broker" / "mosquitto.pid").read_text().split() == [
        str(child.pid),
        str(run.proc.pid),
    ]
    run.kill()
    try:
        wait_until(lambda: gone(child.pid), 15, "the orphaned broker to exit")
    finally:
        if not gone(child.pid):
            child.kill()
    wait_until(lambda: port_free(port), 15, "the broker's port to be free")

    again = RunProcess(config, None, log)
    (second,) = broker_children(again.proc.pid)
    # `simulate` finds the embedded broker from the same config
    command = ["simulate", "-c", str(config), "--duration", "20", "--speed", "200"]
    simulate = subprocess.run(
        [sys.executable, "-m", "streetwatch", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert simulate.returncode == 0, simulate.stderr
    summary = again.terminate()
    assert summary["ingest"]["messages_committed"] > 0
    assert gone(second.pid)
    assert not (tmp_path / "var" / "broker" / "mosquitto.pid").exists()


HELPER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from streetwatch.localbroker import Mosquitto

    workdir, port, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    broker = Mosquitto(workdir, port=port, tied=mode == "tied").start()
    if mode == "orphan":  # what a run killed before it could tie its broker left behind
        broker._write_pid(broker.process.pid)
    print(broker.process.pid, flush=True)
    if mode == "orphan":
        os._exit(0)
    time.sleep(600)
    """
)


def helper(workdir: Path, port: int, mode: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(workdir), str(port), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_an_orphaned_broker_of_the_same_site_is_reclaimed_at_start(tmp_path: Path) -> None:
    port = free_port()
    config = load_config(embedded_site(tmp_path, port))
    proc, orphan = helper(tmp_path / "var" / "broker", port, "orphan")
    proc.wait(30)
    assert not gone(orphan) and not port_free(port)
    try:
        config, broker = start_embedded_broker(config)
    finally:
        if not gone(orphan):
            os.kill(orphan, signal.SIGKILL)
    try:
        assert gone(orphan)
        assert broker.process is not None and broker.process.poll() is None
        assert config.broker.url == f"mqtt://127.0.0.1:{port}"
    finally:
        broker.stop()


def test_a_broker_its_live_owner_still_holds_is_left_alone(tmp_path: Path) -> None:
    port = free_port()
    config = load_config(embedded_site(tmp_path, port))
    proc, held = helper(tmp_path / "var" / "broker", port, "tied")
    try:
        with pytest.raises(EmbeddedBrokerError, match=f"belongs to process {proc.pid}"):
            start_embedded_broker(config)
        assert not gone(held)
    finally:
        proc.kill()
        proc.wait(10)
    # tied: the kernel stops it with its owner
    wait_until(lambda: gone(held), 15, "the tied broker to exit with its owner")


def test_a_pid_file_naming_some_other_mosquitto_is_ignored(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    config = load_config(embedded_site(tmp_path, port))
    workdir = tmp_path / "var" / "broker"
    workdir.mkdir(parents=True)
    assert mosquitto.process is not None
    (workdir / "mosquitto.pid").write_text(f"{mosquitto.process.pid} 1\n")
    config, broker = start_embedded_broker(config)
    try:
        assert mosquitto.process.poll() is None
    finally:
        broker.stop()


def test_the_shipped_embedded_port_does_not_clash_with_a_system_mosquitto(tmp_path: Path) -> None:
    shipped = load_config(REPO / "devices.yaml")
    assert shipped.broker.embedded
    assert shipped.broker.embedded_port not in (1883, 8883)
    storage = shipped.storage.model_copy(
        update={"root": tmp_path / "var", "journal": tmp_path / "var" / "journal.sqlite"}
    )
    config, broker = start_embedded_broker(shipped.model_copy(update={"storage": storage}))
    try:
        assert config.broker.url == f"mqtt://127.0.0.1:{shipped.broker.embedded_port}"
    finally:
        broker.stop()
    assert load_config(REPO / "deploy" / "devices.production.yaml").broker.embedded_port != 1883
