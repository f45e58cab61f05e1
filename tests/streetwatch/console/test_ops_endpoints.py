"""/metrics and /healthz of the console, on a real server: public by default, Prometheus text
with the stages' names, 503 when a stage is down; /metrics behind a token when configured."""

import json
import urllib.error
import urllib.request

import pytest

from ingest.config import load_config
from tests.conftest import REPO
from tests.consolekit import serve_console


def site(**console):
    config = load_config(REPO / "devices.yaml")
    return config.model_copy(update={"console": config.console.model_copy(update=console)})


@pytest.fixture
def server(tmp_path):
    state = {"ok": True}
    counters = {
        "ingest": {"messages_committed": 12, "dead_letters.not_json": 2, "dead_letters.empty": 1},
        "feed": {"feed_backlog": 3, "delivered": 7},
    }
    ops = serve_console(
        site(),
        tmp_path,
        sources=lambda: counters,
        health=lambda: (state["ok"], {"broker": "connected"}),
    )
    try:
        yield ops, state
    finally:
        ops.stop()


def _get(ops, path, headers=None):
    host, port = ops.address
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
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
    assert _get(ops, "/api/v1/nope")[0] == 401  # anonymous: unknown paths are not told apart


def test_metrics_need_a_token_when_not_public(tmp_path):
    ops = serve_console(site(metrics_public=False), tmp_path, sources=lambda: {"feed": {"x": 1}})
    try:
        status, body = _get(ops, "/metrics")
        assert status == 401 and "authentication required" in body
        _, token = ops.ctx.tokens.add("prometheus", "viewer")
        status, body = _get(ops, "/metrics", {"Authorization": f"Bearer {token}"})
        assert status == 200 and "streetwatch_feed_x_total" in body
        assert _get(ops, "/healthz")[0] == 200
    finally:
        ops.stop()
