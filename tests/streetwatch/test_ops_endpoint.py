import json
import urllib.error
import urllib.request

import pytest

from streetwatch.ops import OpsServer


@pytest.fixture
def server():
    state = {"ok": True}
    counters = {
        "ingest": {"messages_committed": 12, "dead_letters.not_json": 2, "dead_letters.empty": 1},
        "feed": {"feed_backlog": 3, "delivered": 7},
    }
    ops = OpsServer(
        lambda: counters, lambda: (state["ok"], {"broker": "connected"}), port=0
    ).start()
    try:
        yield ops, state
    finally:
        ops.stop()


def _get(ops, path):
    host, port = ops.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_binds_to_loopback_by_default(server):
    ops, _ = server
    assert ops.address[0] == "127.0.0.1"


def test_metrics_are_prometheus_text_with_stage_names_and_labels(server):
    ops, _ = server
    status, body = _get(ops, "/metrics")
    assert status == 200
    assert 'streetwatch_ingest_messages_committed_total{kind=""} 12.0' in body
    assert 'streetwatch_ingest_dead_letters_total{kind="not_json"} 2.0' in body
    assert "# TYPE streetwatch_feed_feed_backlog gauge" in body
    assert 'streetwatch_feed_feed_backlog{kind=""} 3.0' in body


def test_health_says_503_when_a_stage_is_down(server):
    ops, state = server
    status, body = _get(ops, "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True, "broker": "connected"}
    state["ok"] = False
    status, body = _get(ops, "/healthz")
    assert status == 503 and json.loads(body)["ok"] is False
    assert _get(ops, "/nope")[0] == 404
