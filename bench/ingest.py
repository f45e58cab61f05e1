"""Ingestion throughput: one publisher process floods GPS JSON at QoS 1 through a loopback
Mosquitto; the ingestor consumes at QoS 1 into the SQLite journal (ack after commit).

Prints sustained readings/s, end-to-end latency (publish -> journal commit), CPU of each
process, and messages lost. Last line: `readings_per_s: N /s`.

    .venv/bin/python bench/ingest.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOPIC = "streetwatch/bench-site/gps-1/gps"


def publish(port: int, count: int) -> None:
    """paho MQTT v5 publisher at QoS 1 with a window of 1000 unacknowledged messages.

    The window is kept by the publisher itself (paho's own max_inflight scans its whole queue on
    every PUBACK, which makes a flood quadratic), so paho's limit is switched off."""
    import paho.mqtt.client as mqtt

    window = threading.BoundedSemaphore(1000)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(0)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for seq in range(count):
        window.acquire()
        body = (
            f'{{"ts":{time.time():.6f},"lat":{31.19 + (seq % 1000) * 1e-5:.6f},'
            f'"lon":121.43,"speed_kmh":32.5,"heading":90,"hdop":0.9,"sats":14,"seq":{seq}}}'
        )
        client.publish(TOPIC, body, qos=1)
    for _ in range(1000):
        window.acquire(timeout=120)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--publish-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_port:
        publish(args.publish_port, args.messages)
        return

    import psutil

    from ingest.config import SiteConfig
    from ingest.journal import Journal
    from ingest.mqtt_consumer import MqttIngestor
    from streetwatch.localbroker import Mosquitto

    work = Path(tempfile.mkdtemp(prefix="sw-bench-ingest-"))
    broker = Mosquitto(work / "mosquitto").start()
    config = SiteConfig.model_validate(
        {
            "site": {"id": "bench-site"},
            "broker": {"url": broker.url, "client_id": "bench-consumer", "receive_maximum": 5000},
            "ingest": {"batch_size": 2000, "flush_interval_ms": 20},
            "storage": {"root": str(work)},
            "devices": [{"id": "gps-1", "kind": "gps"}],
        }
    ).model_copy()
    journal = Journal(work / "journal.sqlite")
    latencies: list[float] = []
    commit_times: list[tuple[float, int]] = []
    lock = threading.Lock()

    def on_batch(readings) -> None:
        now = time.time()
        with lock:
            latencies.extend(now - r.device_ts.timestamp() for r in readings)
            commit_times.append((time.monotonic(), len(readings)))

    ingestor = MqttIngestor(config, journal, on_batch=on_batch)
    ingestor.start(wait_s=10)
    me = psutil.Process()
    mosq = psutil.Process(broker.process.pid)
    cpu0 = (me.cpu_times(), mosq.cpu_times())
    started = time.monotonic()
    publisher = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--messages",
            str(args.messages),
            "--publish-port",
            str(broker.port),
        ]
    )
    pub_proc = psutil.Process(publisher.pid)
    pub_cpu = 0.0
    deadline = started + 240
    while ingestor.stats.get("messages_committed") < args.messages and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess):
            pub_cpu = sum(pub_proc.cpu_times()[:2])
        time.sleep(0.2)
    publisher.wait(60)
    elapsed = time.monotonic() - started
    cpu1 = (me.cpu_times(), mosq.cpu_times())
    ingestor.stop()
    stored = journal.count()
    journal.close()
    broker.stop()

    with lock:
        times = sorted(commit_times)
    # sustained: the middle 80% of the stream by message count, away from start-up and tail
    total = sum(n for _, n in times)
    cum, t_lo, t_hi, n_lo, n_hi = 0, None, None, 0, 0
    for t, n in times:
        cum += n
        if t_lo is None and cum >= total * 0.1:
            t_lo, n_lo = t, cum
        if t_hi is None and cum >= total * 0.9:
            t_hi, n_hi = t, cum
    sustained = (n_hi - n_lo) / (t_hi - t_lo) if t_hi and t_lo and t_hi > t_lo else stored / elapsed
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    cons_cpu = (cpu1[0].user + cpu1[0].system) - (cpu0[0].user + cpu0[0].system)
    mosq_cpu = (cpu1[1].user + cpu1[1].system) - (cpu0[1].user + cpu0[1].system)
    lost = args.messages - stored
    print(f"machine: {os.cpu_count()} cores; messages: {args.messages}; wall: {elapsed:.1f} s")
    print(f"overall_readings_per_s: {stored / elapsed:.0f} /s")
    print(f"latency_p50: {p50:.1f} ms")
    print(f"latency_p99: {p99:.1f} ms")
    print(
        f"cpu: consumer {cons_cpu / elapsed * 100:.0f}%, mosquitto {mosq_cpu / elapsed * 100:.0f}%,"
        f" publisher {pub_cpu / elapsed * 100:.0f}% (of one core)"
    )
    print(json.dumps({k: v for k, v in sorted(ingestor.stats.snapshot().items())}))
    print(f"lost: {lost}")
    print(f"readings_per_s: {sustained:.0f} /s")


if __name__ == "__main__":
    main()
