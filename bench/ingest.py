"""Ingestion throughput beside the bare client library, and latency, over a real loopback
Mosquitto, QoS 1 end to end.

Each round runs, one after the other on the same broker and with the same publisher:
- live flood: one publisher process sends GPS JSON as fast as a 1000-message window allows,
  first to a bare paho v5 QoS 1 subscriber that only counts (its own process, auto-ack), then
  to the ingestor (decode, validate, journal, ack after commit). Sustained messages/s over the
  middle 80 % of the stream; CPU of consumer, broker and publisher beside each.
- backlog: the same messages published while the consumer is away (its persistent session
  queues them in Mosquitto), then drained: the consumer's own speed, with no publisher sharing
  the cores. Both clients again.
The best of the rounds is reported (noise on a shared box only slows a run down), with the
ratio of the pipeline to the bare client. The headline is the backlog's: in a live flood on 2
cores the one Python publisher is the bound (a client doing nothing gets no more), so the live
ratio says only that both keep up; it is printed as `ratio_to_bare_client_live`.
Paced: the publisher sends at a fixed rate below capacity; end-to-end latency (publisher's
clock at publish -> journal commit) is measured there.

    .venv/bin/python bench/ingest.py [--messages 60000] [--rounds 2] [--paced-rate 5000]

Last lines: `lost: N`, `ratio_to_bare_client_live: N`, `limit_bare_client_per_s: N /s` and
`ratio_to_bare_client: N` (backlog), then `readings_per_s: N /s` (the pipeline's backlog drain).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
RECEIVE_MAXIMUM = 5000


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


def bare(port: int, count: int, subscribe_only: bool, tuned: bool, client_id: str) -> None:
    """The bare client: paho v5, persistent session, QoS 1 (paho's automatic PUBACK), an
    on_message that only counts. Prints `ready` once subscribed, then its figures as JSON.

    `tuned`: the same with the ingestor's receive path (ingest/mqtt_client.py): buffered reads,
    every buffered packet per pass, raw publishes, one PUBACK write per pass. What the library
    costs the ingestor, with nothing of the ingestor's own work."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ingest.mqtt_client import IngestClient

    received = 0
    marks: dict[str, float] = {}
    subscribed, done = threading.Event(), threading.Event()
    lo, hi = max(1, count // 10), max(1, count * 9 // 10)

    def on_message(client, userdata, message) -> None:
        nonlocal received
        received += 1
        if received == lo:
            marks["lo"] = time.monotonic()
        elif received == hi:
            marks["hi"] = time.monotonic()
        if received == count:
            marks["end"] = time.monotonic()
            done.set()

    if tuned:
        acks: list[int] = []
        client = IngestClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
            manual_ack=True,
        )  # fmt: skip

        def on_raw(topic: bytes, mid: int, qos: int, payload: bytes) -> None:
            acks.append(mid)
            on_message(None, None, None)

        def on_read_end() -> None:
            client.ack_many(acks)
            acks.clear()

        client.on_raw_publish = on_raw
        client.on_read_end = on_read_end
    else:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    started = time.monotonic()
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    subscribed.wait(30)
    print("ready", flush=True)
    if not subscribe_only:
        done.wait(200)
    client.disconnect()
    client.loop_stop()
    span = marks.get("hi", 0) - marks.get("lo", 0)
    rate = (hi - lo) / span if span > 0 else 0.0
    print(json.dumps({"received": received, "rate": rate, "start": started}), flush=True)


def sustained(commits: list[tuple[float, int]]) -> float:
    """Messages/s between 10 % and 90 % of what these (time, count) commits add up to."""
    total = sum(n for _, n in commits)
    cumulative, t_lo, t_hi, n_lo, n_hi = 0, None, None, 0, 0
    for t, n in sorted(commits):
        cumulative += n
        if t_lo is None and cumulative >= total * 0.1:
            t_lo, n_lo = t, cumulative
        if t_hi is None and cumulative >= total * 0.9:
            t_hi, n_hi = t, cumulative
    if t_lo and t_hi and t_hi > t_lo:
        return (n_hi - n_lo) / (t_hi - t_lo)
    ordered = sorted(commits)  # a few big commits: from the end of the first to the last
    span = ordered[-1][0] - ordered[0][0] if len(ordered) > 1 else 0.0
    return (total - ordered[0][1]) / span if span > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--paced-rate", type=float, default=5000)
    parser.add_argument("--paced-s", type=float, default=5)
    parser.add_argument("--publish-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--subscribe-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", default="bench-bare", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first-seq", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_port:
        publish(args.publish_port, args.messages, args.rate, args.first_seq)
        return
    if args.bare_port:
        bare(args.bare_port, args.messages, args.subscribe_only, args.tuned, args.client_id)
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
            "broker": {
                "url": broker.url,
                "client_id": "bench-consumer",
                "receive_maximum": RECEIVE_MAXIMUM,
            },
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

    me = psutil.Process()
    mosq = psutil.Process(broker.process.pid)
    next_seq = 0
    sent = 0

    def cpu(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.NoSuchProcess):
            return sum(proc.cpu_times()[:2])
        return 0.0

    def run_publisher(count: int, rate: float, done) -> tuple[float, float]:
        """Publish `count` messages; wait until `done()`. Returns (seconds, publisher CPU s)."""
        nonlocal next_seq, sent
        command = [sys.executable, __file__, "--messages", str(count)]
        command += ["--publish-port", str(broker.port), "--rate", str(rate)]
        command += ["--first-seq", str(next_seq)]
        next_seq += count
        sent += count
        started = time.monotonic()
        publisher = subprocess.Popen(command)
        proc = psutil.Process(publisher.pid)
        used = 0.0
        deadline = time.monotonic() + 200
        while not done(publisher) and time.monotonic() < deadline:
            used = max(used, cpu(proc))
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        publisher.wait(60)
        return elapsed, used

    def start_bare(tuned: bool, client_id: str, subscribe_only: bool = False) -> subprocess.Popen:
        """A bare client process; each run has a session (client id) of its own."""
        command = [sys.executable, __file__, "--bare-port", str(broker.port)]
        command += ["--client-id", client_id]
        command += ["--messages", str(args.messages)]
        command += ["--subscribe-only"] if subscribe_only else []
        command += ["--tuned"] if tuned else []
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        return child

    def finish_bare(child: subprocess.Popen) -> dict:
        out, _ = child.communicate(timeout=200)
        result = json.loads(out.strip().splitlines()[-1])
        if result["received"] < args.messages:
            raise SystemExit(f"bare client received {result['received']} of {args.messages}")
        return result

    def shares(elapsed: float, consumer: float, broker_cpu: float, pub: float | None) -> str:
        text = (
            f"consumer {consumer / elapsed * 100:.0f}%, mosquitto {broker_cpu / elapsed * 100:.0f}%"
        )
        return text + (f", publisher {pub / elapsed * 100:.0f}%" if pub is not None else "")

    def bare_live(tuned: bool = False) -> tuple[float, str]:
        child = start_bare(tuned, f"bench-bare-{next_seq}")
        proc = psutil.Process(child.pid)
        c0, m0 = cpu(proc), cpu(mosq)
        used = [0.0]

        def done(_publisher) -> bool:
            used[0] = max(used[0], cpu(proc))
            return child.poll() is not None

        elapsed, pub = run_publisher(args.messages, 0, done)
        result = finish_bare(child)
        return result["rate"], shares(elapsed, used[0] - c0, cpu(mosq) - m0, pub)

    def bare_backlog(tuned: bool = False) -> tuple[float, str]:
        client_id = f"bench-bare-{next_seq}"
        start_bare(tuned, client_id, subscribe_only=True).communicate(timeout=60)
        run_publisher(args.messages, 0, lambda publisher: publisher.poll() is not None)
        m0, started = cpu(mosq), time.monotonic()
        child = start_bare(tuned, client_id)
        proc = psutil.Process(child.pid)
        used = 0.0
        while child.poll() is None:
            used = max(used, cpu(proc))
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        result = finish_bare(child)
        return result["rate"], shares(elapsed, used, cpu(mosq) - m0, None)

    ingestor = MqttIngestor(config, journal, on_batch=on_batch)
    ingestor.start(wait_s=10)

    def committed_at_least(target: int):
        return lambda _publisher: ingestor.stats.get("messages_committed") >= target

    def pipeline_live() -> tuple[float, str]:
        with lock:
            commits.clear()
        target = ingestor.stats.get("messages_committed") + args.messages
        c0, m0 = cpu(me), cpu(mosq)
        elapsed, pub = run_publisher(args.messages, 0, committed_at_least(target))
        with lock:
            rate = sustained(commits)
        return rate, shares(elapsed, cpu(me) - c0, cpu(mosq) - m0, pub)

    def pipeline_backlog() -> tuple[float, str]:
        nonlocal ingestor
        ingestor.stop()
        run_publisher(args.messages, 0, lambda publisher: publisher.poll() is not None)
        with lock:
            commits.clear()
        c0, m0, started = cpu(me), cpu(mosq), time.monotonic()
        ingestor = MqttIngestor(config, journal, on_batch=on_batch)
        ingestor.start(wait_s=10)
        deadline = time.monotonic() + 200
        while ingestor.stats.get("messages_committed") < args.messages:
            if time.monotonic() > deadline:
                raise SystemExit("the backlog was not drained within 200 s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        with lock:
            rate = sustained(commits)
        return rate, shares(elapsed, cpu(me) - c0, cpu(mosq) - m0, None)

    figures: dict[str, list[tuple[float, str]]] = {}
    for _ in range(args.rounds):
        for name, phase in (
            ("bare live", bare_live),
            ("pipeline live", pipeline_live),
            ("tuned live", lambda: bare_live(tuned=True)),
            ("bare backlog", bare_backlog),
            ("pipeline backlog", pipeline_backlog),
            ("tuned backlog", lambda: bare_backlog(tuned=True)),
        ):
            figures.setdefault(name, []).append(phase())
    with lock:
        latencies.clear()
    paced = int(args.paced_rate * args.paced_s)
    target = ingestor.stats.get("messages_committed") + paced
    run_publisher(paced, args.paced_rate, committed_at_least(target))
    with lock:
        paced_latencies = sorted(latencies)
    duplicates = ingestor.stats.get("duplicates")
    ingestor.stop()
    stored = journal.count()
    journal.close()
    broker.stop()
    shutil.rmtree(work, ignore_errors=True)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    print(f"machine: {os.cpu_count()} cores, {sys.platform}; journal synchronous=FULL")
    print(f"{args.messages} GPS JSON messages a run, QoS 1, receive maximum {RECEIVE_MAXIMUM}")
    for name, runs in figures.items():
        for rate, cpus in runs:
            print(f"{name}: {rate:.0f} /s (cpu of one core: {cpus})")
    best = {name: max(rate for rate, _ in runs) for name, runs in figures.items()}
    for mode in ("live", "backlog"):
        pipeline = best["pipeline " + mode]
        print(
            f"{mode}: pipeline {pipeline:.0f} /s; bare client {best['bare ' + mode]:.0f} /s, ratio"
            f" {pipeline / best['bare ' + mode]:.2f}; tuned client {best['tuned ' + mode]:.0f}"
            f" /s, ratio {pipeline / best['tuned ' + mode]:.2f}"
        )
    print(f"paced: {paced} messages at {args.paced_rate:.0f} /s")
    print(f"latency_p50: {statistics.median(paced_latencies) * 1000:.1f} ms")
    print(f"latency_p99: {pct(paced_latencies, 0.99):.1f} ms")
    print(f"duplicates: {duplicates}")
    print(f"lost: {sent - stored}")
    print(f"ratio_to_bare_client_live: {best['pipeline live'] / best['bare live']:.2f}")
    print(f"limit_bare_client_per_s: {best['bare backlog']:.0f} /s")
    print(f"ratio_to_bare_client: {best['pipeline backlog'] / best['bare backlog']:.2f}")
    print(f"readings_per_s: {best['pipeline backlog']:.0f} /s")


if __name__ == "__main__":
    main()
