"""Ingestion throughput and latency over a real loopback Mosquitto, QoS 1 end to end.

Phase 1 (flood): one publisher process sends GPS JSON as fast as a 1000-message window allows;
the ingestor consumes at QoS 1 into the SQLite journal (ack after commit). Sustained
readings/s is measured over the middle 80 % of the stream.
Phase 2 (paced): the publisher sends at a fixed rate below capacity; end-to-end latency
(publisher's clock at publish -> journal commit) is measured there, since under a flood it
only measures the broker's queue.

    .venv/bin/python bench/ingest.py [--messages 200000] [--paced-rate 5000] [--paced-s 10]

Last lines: `lost: N`, then `readings_per_s: N /s`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
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
WINDOW = 1000


def publish(port: int, count: int, rate: float, first_seq: int) -> None:
    """paho MQTT v5 publisher at QoS 1 with a window of WINDOW unacknowledged messages.

    The window is kept here: paho's own max_inflight scans its whole queue on every PUBACK,
    which makes a flood quadratic, so paho's limit is switched off."""
    import paho.mqtt.client as mqtt

    window = threading.BoundedSemaphore(WINDOW)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{first_seq}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(0)
    client.on_publish = lambda *_: window.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.monotonic()
    for i in range(count):
        if rate > 0:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        window.acquire()
        seq = first_seq + i
        body = (
            f'{{"ts":{time.time():.6f},"lat":{31.19 + (seq % 1000) * 1e-5:.6f},'
            f'"lon":121.43,"speed_kmh":32.5,"heading":90,"hdop":0.9,"sats":14,"seq":{seq}}}'
        )
        client.publish(TOPIC, body, qos=1)
    for _ in range(WINDOW):
        window.acquire(timeout=120)
    client.disconnect()
    client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--paced-rate", type=float, default=5000)
    parser.add_argument("--paced-s", type=float, default=10)
    parser.add_argument("--publish-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first-seq", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_port:
        publish(args.publish_port, args.messages, args.rate, args.first_seq)
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
    )
    journal = Journal(work / "journal.sqlite")
    latencies: list[float] = []
    commits: list[tuple[float, int]] = []
    lock = threading.Lock()

    def on_batch(readings) -> None:
        now = time.time()
        with lock:
            latencies.extend(now - r.device_ts.timestamp() for r in readings)
            commits.append((time.monotonic(), len(readings)))

    ingestor = MqttIngestor(config, journal, on_batch=on_batch)
    ingestor.start(wait_s=10)
    me = psutil.Process()
    mosq = psutil.Process(broker.process.pid)

    def run_publisher(count: int, rate: float, first_seq: int) -> float:
        """Publish and wait until everything is committed; returns the publisher's CPU seconds."""
        target = ingestor.stats.get("messages_committed") + count
        command = [sys.executable, __file__, "--messages", str(count)]
        command += ["--publish-port", str(broker.port), "--rate", str(rate)]
        command += ["--first-seq", str(first_seq)]
        publisher = subprocess.Popen(command)
        proc = psutil.Process(publisher.pid)
        cpu = 0.0
        deadline = time.monotonic() + 200
        while ingestor.stats.get("messages_committed") < target and time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                cpu = sum(proc.cpu_times()[:2])
            time.sleep(0.1)
        publisher.wait(60)
        return cpu

    cpu0 = (sum(me.cpu_times()[:2]), sum(mosq.cpu_times()[:2]))
    started = time.monotonic()
    pub_cpu = run_publisher(args.messages, 0, 0)
    elapsed = time.monotonic() - started
    cpu1 = (sum(me.cpu_times()[:2]), sum(mosq.cpu_times()[:2]))
    with lock:
        flood_commits = sorted(commits)
        latencies.clear()
    paced = int(args.paced_rate * args.paced_s)
    run_publisher(paced, args.paced_rate, args.messages)
    with lock:
        paced_latencies = sorted(latencies)
    ingestor.stop()
    stored = journal.count()
    journal.close()
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)

    total = sum(n for _, n in flood_commits)
    cumulative, t_lo, t_hi, n_lo, n_hi = 0, None, None, 0, 0
    for t, n in flood_commits:
        cumulative += n
        if t_lo is None and cumulative >= total * 0.1:
            t_lo, n_lo = t, cumulative
        if t_hi is None and cumulative >= total * 0.9:
            t_hi, n_hi = t, cumulative
    sustained = (n_hi - n_lo) / (t_hi - t_lo) if t_lo and t_hi and t_hi > t_lo else total / elapsed
    sent = args.messages + paced
    lost = sent - stored

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    print(f"machine: {os.cpu_count()} cores, {sys.platform}; journal synchronous=FULL")
    print(f"flood: {args.messages} messages in {elapsed:.1f} s, {total / elapsed:.0f} /s overall")
    print(
        f"flood cpu (of one core): consumer {(cpu1[0] - cpu0[0]) / elapsed * 100:.0f}%,"
        f" mosquitto {(cpu1[1] - cpu0[1]) / elapsed * 100:.0f}%,"
        f" publisher {pub_cpu / elapsed * 100:.0f}%"
    )
    print(f"paced: {paced} messages at {args.paced_rate:.0f} /s")
    print(f"latency_p50: {statistics.median(paced_latencies) * 1000:.1f} ms")
    print(f"latency_p99: {pct(paced_latencies, 0.99):.1f} ms")
    print(f"duplicates: {ingestor.stats.get('duplicates')}")
    print(f"lost: {lost}")
    print(f"readings_per_s: {sustained:.0f} /s")


if __name__ == "__main__":
    main()
