"""The case feed against a real HTTP server that fails, times out, vanishes and comes back, and
against a real Mosquitto. The server stores each case once by Idempotency-Key and counts every
request, so loss and duplication downstream are both visible."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.feed import CaseFeed
from evidence.keys import Signer
from evidence.ledger import Ledger
from evidence.service import EvidenceService
from evidence.verify import verify_chain
from streetwatch.localbroker import free_port
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class CaseSystem:
    """A case system on loopback: `mode` is ok | fail (HTTP 500) | slow (stores the case but
    answers after the client gave up) | bad (HTTP 400)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.delay_s = 1.5
        self.echo: str | None = None
        """When set, the manifest hash the answer echoes instead of the one sent."""
        self.stored: dict[str, Any] = {}
        self.requests: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cases"

    def start(self) -> CaseSystem:
        system = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                with system.lock:
                    system.requests[key] += 1
                    system.headers.append(dict(self.headers))
                    mode = system.mode
                if mode == "fail":
                    return self._answer(500, {"error": "database down"})
                if mode == "bad":
                    return self._answer(400, {"error": "schema"})
                with system.lock:
                    duplicate = key in system.stored
                    if not duplicate:
                        system.stored[key] = (self.headers.get("Content-Type"), body)
                if mode == "slow":
                    time.sleep(system.delay_s)
                echo = system.echo or self.headers.get("Streetwatch-Manifest-SHA256")
                answer = {"case_ref": f"CS-{key}", "manifest_sha256": echo}
                self._answer(200 if duplicate else 201, answer)

            def _answer(self, status: int, data: dict) -> None:
                payload = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def case_system() -> Iterator[CaseSystem]:
    system = CaseSystem().start()
    yield system
    system.stop()


def _setup(tmp_path: Path, ring, n: int, **feed: Any):
    config = site_config(tmp_path, feed=feed)
    store = CaseStore(tmp_path / "var/cases.sqlite")
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, None)
    service = EvidenceService(builder, store)
    for i in range(n):
        service.handle(make_violation(START, i, dwell_s=2.0, pre_s=0.5, post_s=0.5))
    return config, store, signer


def _drain_until(feed: CaseFeed, done, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, feed.outbox()
        feed.drain_once()
        time.sleep(0.02)


def test_outage_restart_timeouts_and_recovery(tmp_path: Path, ring, case_system) -> None:
    config, store, _ = _setup(
        tmp_path,
        ring,
        4,
        http={"url": case_system.url, "timeout_s": 0.5},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.05},
    )
    case_ids = {c.case_id for c in store.list()}
    feed = CaseFeed(config, store)

    # the case system answers 500: everything waits in the outbox, submitted, nothing lost
    case_system.mode = "fail"
    for _ in range(5):
        feed.drain_once()
        time.sleep(0.06)
    assert {c.state for c in store.list()} == {State.SUBMITTED}
    assert not case_system.stored and sum(case_system.requests.values()) >= 8
    assert feed.stats["http_retries"] >= 8

    # the box restarts mid-outage: a new feed over the same outbox carries on
    feed.close()
    case_system.stop()  # and the case system goes away entirely (connection refused)
    feed = CaseFeed(config, store)
    feed.drain_once()
    assert all(r["state"] == "pending" and r["attempts"] >= 2 for r in feed.outbox())
    assert "cannot reach" in feed.outbox()[0]["last_error"]

    # it comes back slow: it stores each case but answers after our 0.5 s timeout
    case_system.start()
    case_system.mode = "slow"
    _drain_until(feed, lambda: len(case_system.stored) == 4)
    assert {c.state for c in store.list()} == {State.SUBMITTED}
    assert "timed out" in " ".join(str(r["last_error"]) for r in feed.outbox())

    # and healthy again: every case acknowledged; the repeats were recognised as such
    case_system.mode = "ok"
    _drain_until(feed, lambda: all(c.state is State.ACKNOWLEDGED for c in store.list()))
    assert set(case_system.stored) == case_ids
    assert all(case_system.requests[k] >= 3 for k in case_ids)
    assert set(case_system.requests) == case_ids
    for case_id in case_ids:
        ack = store.events(case_id)[-1]
        assert ack.event == "acknowledged"
        assert ack.data["responses"][0]["status"] == 200  # a repeat: the first one timed out
    body = json.loads(next(iter(case_system.stored.values()))[1])
    assert body["case"]["case_id"] in case_ids and body["manifest"]["files"]
    assert all(m["ref"].startswith("2026-11-23/") for m in body["media"])
    feed.close()


def test_background_thread_delivers_and_stops(tmp_path: Path, ring, case_system) -> None:
    config, store, _ = _setup(
        tmp_path, ring, 2, http={"url": case_system.url},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.05},
    )  # fmt: skip
    feed = CaseFeed(config, store)
    feed.start()
    deadline = time.monotonic() + 20
    while not all(c.state is State.ACKNOWLEDGED for c in store.list()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    feed.stop()
    assert len(case_system.stored) == 2 and sum(case_system.requests.values()) == 2


def test_upload_mode_sends_every_file_with_token(
    tmp_path: Path, ring, case_system, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store, signer = _setup(
        tmp_path, ring, 1,
        http={"url": case_system.url, "media": "upload", "token_env": "CASE_TOKEN"},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.02},
    )  # fmt: skip
    feed = CaseFeed(config, store)
    monkeypatch.delenv("CASE_TOKEN", raising=False)
    feed.drain_once()
    assert not case_system.requests  # no token: not even sent, and retried later
    assert "CASE_TOKEN" in feed.outbox()[0]["last_error"]
    monkeypatch.setenv("CASE_TOKEN", "s3cret")
    time.sleep(0.03)
    _drain_until(feed, lambda: store.list()[0].state is State.ACKNOWLEDGED)
    assert case_system.headers[-1]["Authorization"] == "Bearer s3cret"
    content_type, body = next(iter(case_system.stored.values()))
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = {p.get_filename() or p.get_param("name", header="content-disposition"): p
             for p in message.iter_parts()}  # fmt: skip
    manifest_bytes = parts["manifest.json"].get_payload(decode=True)
    assert signer.verifier.verify(parts["manifest.sig"].get_payload(decode=True), manifest_bytes)
    manifest = json.loads(manifest_bytes)
    chain = json.loads(parts["chain"].get_payload(decode=True))
    assert chain["seq"] == manifest["seq"] == 1
    assert chain["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
    for entry in manifest["files"]:
        data = parts[entry["path"]].get_payload(decode=True)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert "media/cam-1/clip.mp4" in parts
    feed.close()


def test_refused_payload_is_not_retried(tmp_path: Path, ring, case_system) -> None:
    config, store, _ = _setup(
        tmp_path, ring, 1, http={"url": case_system.url},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.02},
    )  # fmt: skip
    case_system.mode = "bad"
    feed = CaseFeed(config, store)
    for _ in range(4):
        feed.drain_once()
        time.sleep(0.03)
    assert sum(case_system.requests.values()) == 1
    row = feed.outbox()[0]
    assert row["state"] == "refused" and "HTTP 400" in row["last_error"]
    assert feed.stats["http_refused"] == 1 and store.list()[0].state is State.SUBMITTED
    feed.close()


def test_backoff_grows_exponentially_and_is_capped(tmp_path: Path, ring) -> None:
    now = [1000.0]
    config, store, _ = _setup(
        tmp_path, ring, 1,
        http={"url": f"http://127.0.0.1:{free_port()}/down", "timeout_s": 0.2},
        retry={"min_delay_s": 1.0, "max_delay_s": 16.0},
    )  # fmt: skip
    feed = CaseFeed(config, store, clock=lambda: now[0])
    waits = []
    for _ in range(8):
        feed.drain_once()
        row = feed.outbox()[0]
        waits.append(row["next_at"] - now[0])
        now[0] = row["next_at"]
    for attempt, wait in enumerate(waits, 1):
        full = min(16.0, 2 ** (attempt - 1))
        assert full / 2 <= wait <= full, (attempt, waits)
    assert feed.outbox()[0]["attempts"] == 8
    feed.close()


def test_mqtt_publish_to_real_mosquitto(tmp_path: Path, ring, mosquitto) -> None:
    config, store, _ = _setup(
        tmp_path, ring, 2, mqtt={"topic": "streetwatch/{site}/cases"},
        retry={"min_delay_s": 0.05, "max_delay_s": 0.2},
    )  # fmt: skip
    config = config.model_copy(
        update={"broker": config.broker.model_copy(update={"url": mosquitto.url})}
    )
    received: list[dict] = []
    got = threading.Event()
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, m: (received.append(json.loads(m.payload)), got.set())
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("streetwatch/test-site/cases", qos=1)
    sub.loop_start()
    try:
        # the broker's SUBACK, not a nap: a case published before it would never reach us
        assert subscribed.wait(30), "no SUBACK from mosquitto"
        feed = CaseFeed(config, store)
        feed.start()
        deadline = time.monotonic() + 20
        while not all(c.state is State.ACKNOWLEDGED for c in store.list()):
            assert time.monotonic() < deadline, feed.outbox()
            time.sleep(0.05)
        feed.stop()
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert sorted(m["idempotency_key"] for m in received) == sorted(c.case_id for c in store.list())
    manifest = json.loads(base64.b64decode(received[0]["manifest_b64"]))
    assert manifest == received[0]["manifest"]


def test_delivery_carries_the_chain_link_and_the_ack_is_recorded(
    tmp_path: Path, ring, case_system
) -> None:
    """Each delivered case names its link in the box's chain (seq, its manifest's hash, the
    previous one, the key, the box's head); the case system's answer is recorded with the case,
    and the highest acknowledged link is what catches a chain whose tail was cut."""
    config, store, signer = _setup(
        tmp_path, ring, 3, http={"url": case_system.url},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.05},
    )  # fmt: skip
    feed = CaseFeed(config, store)
    _drain_until(feed, lambda: all(c.state is State.ACKNOWLEDGED for c in store.list()))
    feed.close()
    links = {}
    sent = {h["Idempotency-Key"]: {k.lower(): v for k, v in h.items()} for h in case_system.headers}
    for key, (_, raw) in case_system.stored.items():
        body, headers = json.loads(raw), sent[key]
        chain, manifest_bytes = body["chain"], base64.b64decode(body["manifest_b64"])
        assert chain["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()
        assert chain["seq"] == body["manifest"]["seq"]
        assert chain["prev_manifest_sha256"] == body["manifest"]["prev_manifest_sha256"]
        assert chain["key_id"] == signer.key_id
        assert chain["box_head"]["seq"] == 3  # all three were sealed before the first delivery
        assert headers["streetwatch-chain-seq"] == str(chain["seq"])
        assert headers["streetwatch-manifest-sha256"] == chain["manifest_sha256"]
        links[chain["seq"]] = chain
    assert sorted(links) == [1, 2, 3]
    assert links[1]["prev_manifest_sha256"] == "0" * 64
    for seq in (2, 3):
        assert links[seq]["prev_manifest_sha256"] == links[seq - 1]["manifest_sha256"]
    assert links[3]["box_head"]["manifest_sha256"] == links[3]["manifest_sha256"]

    for case in store.list():
        assert case.ack_ref == f"CS-{case.case_id}" and case.acked_at is not None
        assert links[case.chain_seq]["manifest_sha256"] == case.manifest_sha256
        answer = store.events(case.case_id)[-1].data["responses"][0]
        assert answer["chain"]["seq"] == case.chain_seq and answer["ack_ref"] == case.ack_ref
        assert answer["echo"] == {"manifest_sha256": case.manifest_sha256}  # no mismatch
    head = store.acknowledged_head()
    assert head is not None and head["seq"] == 3
    assert head["manifest_sha256"] == links[3]["manifest_sha256"]

    # the newest package and the ledger deleted, a head that fits the shorter chain written:
    # the chain is consistent in itself; the acknowledged head shows what is missing
    root = Path(config.storage.root) / "evidence"
    newest = next(root.glob(f"*/{head['case_id']}"))
    shutil.rmtree(newest)
    shutil.rmtree(root / ".ledger")
    Ledger(root)
    (root / ".ledger/head.json").write_text(
        json.dumps({"seq": 2, "manifest_sha256": links[2]["manifest_sha256"]})
    )
    assert verify_chain(root, signer.verifier).ok
    report = verify_chain(root, signer.verifier, expect_head=(head["seq"], head["manifest_sha256"]))
    assert [f.kind for f in report.findings] == ["tail_missing"]


def test_an_echo_of_another_manifest_is_recorded(tmp_path: Path, ring, case_system) -> None:
    config, store, _ = _setup(
        tmp_path, ring, 1, http={"url": case_system.url},
        retry={"min_delay_s": 0.01, "max_delay_s": 0.05},
    )  # fmt: skip
    case_system.echo = "f" * 64
    feed = CaseFeed(config, store)
    _drain_until(feed, lambda: store.list()[0].state is State.ACKNOWLEDGED)
    feed.close()
    answer = store.events(store.list()[0].case_id)[-1].data["responses"][0]
    assert answer["echo"] == {"manifest_sha256": "f" * 64, "mismatch": True}
    assert feed.stats["ack_echo_mismatch"] == 1
