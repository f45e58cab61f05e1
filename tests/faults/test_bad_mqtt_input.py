"""Bad MQTT input at process level: one real `streetwatch run` on a private Mosquitto is fed,
among the simulated street's good readings, every kind of bad message (oversized payloads,
JPEG bombs, corrupt and truncated JPEGs, non-JSON, JSON of the wrong shape, bad NMEA,
out-of-range values, unknown devices and streams, `..` topic levels, random mutations of good
payloads). Afterwards: the process is up (/healthz 200), every bad message is dead-lettered once
with its reason, each reason's counter on /metrics equals what was sent, messages on topics
outside the subscriptions never reach the consumer, and every good reading is journaled once.

The decoders' own unit and fuzz tests (tests/ingest/decoders) cover each input in isolation;
this suite proves the running process counts and survives them, all mixed into one stream."""

from __future__ import annotations

import io
import json
import random
import struct
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ingest.config import SiteConfig, load_config
from ingest.decoders import decode
from ingest.decoders.base import DecodeError
from ingest.registry import DeviceRegistry
from streetwatch.localbroker import Mosquitto, free_port
from streetwatch.scenario import SimMessage
from tests.conftest import REPO
from tests.faults.conftest import Reliability
from tests.runkit import RunProcess, demo_site, publish, query, scenario, wait_until

MAX_SNAPSHOT = 1024 * 1024
"""The site's ingest.max_snapshot_bytes in this test: oversized snapshots stay cheap to send."""

OUTSIDE = "(never delivered)"
"""Expected outcome of a message on a topic no subscription covers: the broker drops it."""


@dataclass(frozen=True)
class Bad:
    what: str
    """The ledger's name for this kind of bad input."""
    message: SimMessage
    """`fault`: the dead-letter reason expected, or OUTSIDE."""


def jpeg(width: int = 64, height: int = 48, fmt: str = "JPEG", seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (seed % 256, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


def declared(data: bytes, width: int, height: int) -> bytes:
    """A valid JPEG whose frame header (SOF0) is patched to declare width x height."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def bad_inputs(config: SiteConfig, duration_s: float, copies: int, seed: int) -> list[Bad]:
    """`copies` distinct variants of every bad input, spread over the run."""
    rng = random.Random(seed)
    site = config.site.id
    now = datetime.now(UTC).isoformat()

    def topic(device: str, stream: str) -> str:
        return f"streetwatch/{site}/{device}/{stream}"

    gps, nmea = topic("gps-patrol-01", "gps"), topic("gps-muck-07", "gps")
    geomag, telemetry = topic("geomag-fl-01", "geomag"), topic("drone-01", "telemetry")
    snap = topic("drone-01", "snapshot")
    items: list[tuple[str, str, bytes, tuple[tuple[str, str], ...], str]] = []
    for n in range(copies):
        fix = {"ts": now, "lat": 31.1953, "lon": 121.4373, "n": n}

        def js(fix: dict[str, object] = fix, **changes: object) -> bytes:
            return json.dumps({**fix, **changes}).encode()

        picture = jpeg(64 + n % 32, 48, seed=n)
        ts = (("ts", now),)
        items += [
            ("oversized MQTT payload", gps, js(blob="A" * (300 * 1024 + n)), (), "oversized"),
            ("oversized MQTT payload", snap, picture + b"\0" * (MAX_SNAPSHOT + n), ts, "oversized"),
            ("oversized MQTT payload", gps, b" " * (MAX_SNAPSHOT + 1 + n), (), "oversized"),
            (
                "JPEG bomb (huge declared size)",
                snap,
                declared(picture, 60000, 60000),
                ts,
                "image_too_large",
            ),
            (
                "JPEG bomb (huge declared size)",
                snap,
                declared(picture, 8000, 6000),
                ts,
                "image_too_large",
            ),
            (
                "JPEG bomb (huge declared size)",
                snap,
                declared(picture, 65535, 65535),
                (),
                "image_too_large",
            ),
            ("corrupt or truncated JPEG", snap, picture[: len(picture) // 2], ts, "bad_image"),
            (
                "corrupt or truncated JPEG",
                snap,
                picture[:200] + bytes(50 + n) + b"\xff\xd9",
                ts,
                "bad_image",
            ),
            (
                "corrupt or truncated JPEG",
                snap,
                picture[: picture.index(b"\xff\xda")] + b"\xff\xd9",
                ts,
                "bad_image",
            ),
            ("corrupt or truncated JPEG", snap, jpeg(32 + n, 32, "PNG"), ts, "bad_image"),
            ("corrupt or truncated JPEG", snap, b"\xff\xd8" + rng.randbytes(64), ts, "bad_image"),
            ("corrupt or truncated JPEG", snap, rng.randbytes(500), ts, "bad_image"),
            ("non-JSON payload", gps, js()[:-7], (), "not_json"),
            ("non-JSON payload", telemetry, b"\xff\xfe" + js(), (), "bad_encoding"),
            (
                "non-JSON payload",
                geomag,
                b"[" * (100_000 + n) + b"]" * (100_000 + n),
                (),
                "not_json",
            ),
            ("non-JSON payload", gps, b"<xml>%d</xml>" % n, (), "not_json"),
            ("JSON of the wrong shape", gps, b"[%d, 2]" % n, (), "wrong_type"),
            ("JSON of the wrong shape", gps, b'"lat %d"' % n, (), "wrong_type"),
            (
                "JSON of the wrong shape",
                gps,
                json.dumps({"ts": now, "lat": n}).encode(),
                (),
                "missing_field",
            ),
            ("JSON of the wrong shape", gps, js(lat="31.19"), (), "wrong_type"),
            ("JSON of the wrong shape", geomag, js(x={"y": 1}, y=1, z=2), (), "wrong_type"),
            (
                "bad NMEA sentence",
                nmea,
                b"$GPRMC,%d,A,3111.7,N,12126.2,E,0,0,010124,,*00\r\n" % n,
                (),
                "bad_checksum",
            ),
            ("bad NMEA sentence", nmea, b"$GPRMC,0836%02d.00,A,31" % n, (), "truncated_nmea"),
            ("bad NMEA sentence", nmea, js(), (), "truncated_nmea"),
            ("out-of-range or non-finite value", gps, js(lat=999 + n), (), "out_of_range"),
            ("out-of-range or non-finite value", gps, js(lon=-181 - n), (), "out_of_range"),
            ("out-of-range or non-finite value", gps, js(speed_kmh=-1 - n), (), "out_of_range"),
            (
                "out-of-range or non-finite value",
                telemetry,
                js(alt_m=99_999 + n),
                (),
                "out_of_range",
            ),
            (
                "out-of-range or non-finite value",
                geomag,
                b'{"ts":"%s","x":NaN,"y":%d,"z":1}' % (now.encode(), n),
                (),
                "not_finite",
            ),
            ("out-of-range or non-finite value", gps, js(ts=f"yesterday {n}"), (), "bad_time"),
            ("out-of-range or non-finite value", snap, picture, (("ts", f"soon {n}"),), "bad_time"),
            (
                "empty payload",
                topic("gps-patrol-01" if n % 2 else "geomag-fl-02", "gps" if n % 2 else "geomag"),
                b"",
                (),
                "empty",
            ),
            ("unknown device or stream", topic(f"ghost-{n}", "gps"), js(), (), "unknown_device"),
            (
                "unknown device or stream",
                topic("gps-patrol-01", "snapshot"),
                js(),
                (),
                "unknown_stream",
            ),
            (
                "unknown device or stream",
                topic("geomag-fl-01", f"gps{n}"),
                js(),
                (),
                "unknown_stream",
            ),
            ("path traversal in topic level", topic("..", "gps"), js(), (), "unknown_device"),
            (
                "path traversal in topic level",
                topic("gps-patrol-01", ".."),
                js(),
                (),
                "unknown_stream",
            ),
            (
                "path traversal in topic level",
                topic("..%2F..%2Fetc", "gps"),
                js(),
                (),
                "unknown_device",
            ),
            (
                "path traversal in topic level",
                topic("gps-patrol-01/../gps-muck-07", "gps"),
                js(),
                (),
                OUTSIDE,
            ),
            ("path traversal in topic level", f"../../{site}/gps-patrol-01/gps", js(), (), OUTSIDE),
            (
                "topic outside the subscriptions",
                "streetwatch/other-site/gps-patrol-01/gps",
                js(),
                (),
                OUTSIDE,
            ),
            (
                "topic outside the subscriptions",
                f"streetwatch/{site}/gps-patrol-01",
                js(),
                (),
                OUTSIDE,
            ),
        ]
    return [
        Bad(what, SimMessage(rng.uniform(0, duration_s), t, payload, props, fault=reason))
        for what, t, payload, props, reason in items
    ]


def mutations(config: SiteConfig, good: list[SimMessage], count: int, seed: int) -> list[Bad]:
    """Random byte flips, cuts and splices of good payloads. Whether each one decodes, and with
    which reason it fails, is worked out here with the same decoders the consumer runs."""
    rng = random.Random(seed)
    registry = DeviceRegistry(config)
    seen = {(m.topic, m.payload) for m in good}
    out: list[Bad] = []
    while len(out) < count:
        source = rng.choice(good)
        data = bytearray(source.payload)
        for _ in range(rng.randint(1, 4)):
            how = rng.choice(["flip", "cut", "insert", "splice"])
            at = rng.randrange(len(data) or 1)
            if how == "flip" and data:
                data[at] = rng.randrange(256)
            elif how == "cut":
                del data[at : at + rng.randint(1, 40)]
            elif how == "insert":
                data[at:at] = rng.choice([b"\0", b"\xff", b"NaN", b'"', b"{", b"-", b"9e999"])
            else:
                other = rng.choice(good).payload
                data[at:] = other[rng.randrange(len(other) or 1) :]
        payload = bytes(data)
        if (source.topic, payload) in seen:
            continue
        seen.add((source.topic, payload))
        route = registry.route(source.topic)
        ctx = route.context(source.topic, datetime.now(UTC), source.user_properties, config.ingest)
        try:
            decode(ctx, payload)
            reason = None
        except DecodeError as exc:
            reason = str(exc.reason)
        mutated = replace(source, payload=payload, fault=reason)
        out.append(Bad("random mutation of a good payload", mutated))
    return out


def expected_keys(config: SiteConfig, messages: list[SimMessage]) -> set[str]:
    """The journal keys of every reading these messages decode to (as the consumer keys them)."""
    registry = DeviceRegistry(config)
    keys: set[str] = set()
    for message in messages:
        route = registry.route(message.topic)
        ctx = route.context(
            message.topic, datetime.now(UTC), message.user_properties, config.ingest
        )
        keys |= {reading.key for reading in decode(ctx, message.payload)}
    return keys


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as page:
            return page.status, page.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, kind: str = "") -> float:
    prefix = f'streetwatch_ingest_{name}_total{{kind="{kind}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def feed_bad_input(
    mosquitto: Mosquitto,
    tmp_path: Path,
    reliability: Reliability,
    *,
    duration_s: float,
    copies: int,
    mutated: int,
    seed: int,
) -> None:
    doc_ingest = yaml.safe_load((REPO / "devices.yaml").read_text())["ingest"]
    config_path = demo_site(tmp_path, ingest={**doc_ingest, "max_snapshot_bytes": MAX_SNAPSHOT})
    config = load_config(config_path)
    var = tmp_path / "var"
    street = scenario(config_path, duration_s=duration_s, seed=seed)
    good = [m for m in street if m.fault is None]
    planted = [Bad("the simulated street's own bad messages", m) for m in street if m.fault]
    bad = planted + bad_inputs(config, duration_s, copies, seed)
    bad += mutations(config, good, mutated, seed)
    readings = [b.message for b in bad if b.message.fault is None]  # mutations that still decode
    letters = [b for b in bad if b.message.fault not in (None, OUTSIDE)]
    outside = [b for b in bad if b.message.fault == OUTSIDE]
    messages = sorted([*good, *(b.message for b in bad)], key=lambda m: m.at_s)
    want_keys = expected_keys(config, [*good, *readings])
    delivered = len(messages) - len(outside)

    port = free_port()
    run = RunProcess(config_path, mosquitto, tmp_path / "run.log", "--http-port", str(port))
    report = publish(messages, mosquitto)
    assert report.acked == len(messages) and report.failed == 0
    wait_until(
        lambda: metric(get(port, "/metrics")[1], "messages_committed") >= delivered,
        90,
        "every delivered message committed, by /metrics",
    )
    status, health = get(port, "/healthz")
    page = get(port, "/metrics")[1]
    summary = run.terminate()

    journal = var / "journal.sqlite"
    keys = [key for (key,) in query(journal, "SELECT key FROM readings")]
    rows = query(journal, "SELECT topic, payload, payload_size, reason, detail FROM dead_letters")
    kept = Counter(
        (topic, bytes(payload), size, reason) for topic, payload, size, reason, _ in rows
    )
    by_reason = Counter(reason for *_, reason, _ in rows)
    sent_by_reason = Counter(b.message.fault for b in letters)
    readings_lost = len(want_keys - set(keys))
    log = run.log_text()

    # every bad message once, under the reason expected of it, counted on /metrics
    uncounted: Counter[str] = Counter()
    for b in letters:
        m = b.message
        key = (
            m.topic,
            m.payload[: config.ingest.dead_letter_payload_bytes],
            len(m.payload),
            m.fault,
        )
        if kept[key] > 0:
            kept[key] -= 1  # matched: a second copy of the same message needs its own letter
        else:
            uncounted[b.what] += 1
    doubled = sum(kept.values())
    for reason, sent in sent_by_reason.items():
        counted = metric(page, "dead_letters", str(reason))
        if counted != sent or by_reason[reason] != sent:
            uncounted[f"reason {reason}"] += abs(sent - int(counted))
    for what in sorted({b.what for b in bad}):
        tried = sum(1 for b in bad if b.what == what)
        reliability.record(
            "bad input",
            what,
            tried=tried,
            lost=uncounted[what] + readings_lost + doubled,
            reasons=dict(Counter(str(b.message.fault) for b in bad if b.what == what)),
            good_readings=len(want_keys),
            readings_lost=readings_lost,
        )

    assert status == 200 and json.loads(health)["ok"], health
    assert readings_lost == 0 and len(keys) == len(want_keys), (len(keys), len(want_keys))
    assert not uncounted, (uncounted, by_reason, sent_by_reason)
    assert doubled == 0, f"{doubled} dead letters of messages sent once"
    assert by_reason == sent_by_reason
    assert all(detail for *_, detail in rows), "a dead letter without a reason's detail"
    assert len(rows) == len(letters)
    assert summary["ingest"]["received"] == delivered, "a topic outside the subscriptions came in"
    assert metric(page, "received") == delivered
    assert metric(page, "dead_letters") == len(letters)
    assert metric(page, "dead_letters", "internal_error") == 0 and "decoder failed" not in log
    assert "Traceback" not in log, log[-3000:]
    assert "dead letter on" in log and "image_too_large" in log


def test_every_bad_mqtt_input_is_dead_lettered_once_and_counted(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    feed_bad_input(
        mosquitto, tmp_path, reliability, duration_s=240.0, copies=3, mutated=150, seed=11
    )


@pytest.mark.soak
def test_soak_bad_mqtt_input(
    mosquitto: Mosquitto, tmp_path: Path, reliability: Reliability
) -> None:
    feed_bad_input(
        mosquitto, tmp_path, reliability, duration_s=1800.0, copies=40, mutated=2000, seed=12
    )
