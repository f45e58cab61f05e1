"""`POST /api/v1/cases/{case_id}/events` on a real uvicorn server over a real case store: the case
system's token, idempotency keys, refusals with the case's state, and an operator's session."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from evidence.cases import CaseStore, State
from streetwatch.console import ConsoleServer
from streetwatch.users import UserStore
from tests.consolekit import serve_console
from tests.evidence.evidence_support import make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PASSWORD = "decisions-api-pass-1"


@dataclass
class Served:
    server: ConsoleServer
    store: CaseStore
    casesys: httpx.Client
    viewer: httpx.Client
    n: int = 0

    def case(self, upto: State = State.ACKNOWLEDGED, review: str | None = None) -> str:
        """A new case moved along the box's own steps up to `upto`."""
        self.n += 1
        case, _ = self.store.open(make_violation(START, self.n), START)
        path = [State.EVIDENCE_COMPLETE, State.SUBMITTED, State.ACKNOWLEDGED]
        for state in path[: path.index(upto) + 1]:
            columns = {"review": review} if state is State.EVIDENCE_COMPLETE and review else {}
            self.store.transition(case.case_id, state, **columns)
        return case.case_id


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("decisions-api")
    config = site_config(folder)
    store = CaseStore(folder / "cases.sqlite")
    server = serve_console(config, folder / "console", cases=store)
    tokens = server.ctx.tokens  # type: ignore[attr-defined]
    _, casesys = tokens.add("casesys", "operator")
    _, viewer = tokens.add("watcher", "viewer")
    clients = _client(server.url, casesys), _client(server.url, viewer)
    try:
        yield Served(server, store, *clients)
    finally:
        for client in clients:
            client.close()
        server.stop()
        store.close()


def post(client: httpx.Client, case_id: str, body: dict, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(f"/api/v1/cases/{case_id}/events", json=body, headers=headers)


def test_a_decision_then_its_replay(served: Served) -> None:
    case_id = served.case()
    body = {"event": "confirmed", "by": "审核员 李", "reason": "清晰", "ref": "CS-77"}
    first = post(served.casesys, case_id, body, "k-1")
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["state"] == "confirmed" and result["from"] == "acknowledged"
    assert result["source"] == "http" and result["by"] == "审核员 李" and not result["replay"]
    again = post(served.casesys, case_id, body, "k-1")
    assert again.status_code == 200 and again.json() == {**result, "replay": True}
    other = post(served.casesys, case_id, {**body, "reason": "changed"}, "k-1")
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    events = [e.event for e in served.store.events(case_id)]
    assert events.count("confirmed") == 1
    detail = served.casesys.get(f"/api/v1/cases/{case_id}").json()
    shown = [e for e in detail["events"] if e["event"] == "confirmed"]
    assert shown[0]["data"]["by"] == "审核员 李" and shown[0]["data"]["key"] == "k-1"


def test_out_of_order_is_409_then_ok_after_the_earlier_one(served: Served) -> None:
    case_id = served.case()
    notified = {"event": "notified", "how": "sms", "at": "2026-11-23T10:00:00+08:00"}
    refused = post(served.casesys, case_id, notified, "n-1")
    assert refused.status_code == 409
    assert refused.json()["state"] == "acknowledged"
    assert "acknowledged" in refused.json()["detail"]
    assert post(served.casesys, case_id, {"event": "confirmed"}, "c-1").status_code == 201
    ok = post(served.casesys, case_id, notified, "n-1")
    assert ok.status_code == 201 and ok.json()["state"] == "notified"
    assert served.store.get(case_id).updated_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    closed = post(served.casesys, case_id, {"event": "closed"}, "x-1")
    assert closed.status_code == 201
    impossible = post(served.casesys, case_id, {"event": "rectified"}, "r-1")
    assert impossible.status_code == 409 and impossible.json()["state"] == "closed"
    reopened = post(served.casesys, case_id, {"event": "reopened", "reason": "appeal"}, "o-1")
    assert reopened.status_code == 201 and reopened.json()["state"] == "acknowledged"


def test_before_the_acknowledgement_is_refused(served: Served) -> None:
    case_id = served.case(upto=State.SUBMITTED)
    response = post(served.casesys, case_id, {"event": "confirmed"}, str(uuid.uuid4()))
    assert response.status_code == 409
    assert response.json()["state"] == "submitted"
    assert "acknowledgement" in response.json()["detail"]


def test_refusals(served: Served) -> None:
    case_id = served.case()
    assert post(served.casesys, case_id, {"event": "closed"}, None).status_code == 400
    assert post(served.casesys, "20261123-missing", {"event": "closed"}, "u").status_code == 404
    assert post(served.casesys, "..%2F..%2Fetc", {"event": "closed"}, "p").status_code == 404
    assert post(served.casesys, case_id, {"event": "approved"}, "e").status_code == 422
    assert post(served.casesys, case_id, {"event": "notified"}, "h").status_code == 422
    bad = _client(served.server.url, "swt_not-a-token")
    try:
        assert post(bad, case_id, {"event": "closed"}, "b").status_code == 401
    finally:
        bad.close()
    viewer = post(served.viewer, case_id, {"event": "closed"}, "v")
    assert viewer.status_code == 403
    assert served.store.get(case_id).state is State.ACKNOWLEDGED


def test_openapi_declares_the_refusals(served: Served) -> None:
    spec = served.casesys.get("/api/openapi.json").json()
    operation = spec["paths"]["/api/v1/cases/{case_id}/events"]["post"]
    assert {"200", "201", "400", "404", "409", "422"} <= set(operation["responses"])
    assert any(p["name"].lower() == "idempotency-key" for p in operation["parameters"])


def test_box_review_by_an_operator_in_the_console(served: Served) -> None:
    users = UserStore(served.server.ctx.config.console.users_file)  # type: ignore[attr-defined]
    users.add("otto", "operator", PASSWORD)
    with httpx.Client(base_url=served.server.url, timeout=30) as browser:
        assert browser.post("/login", data={"name": "otto", "password": PASSWORD}).is_redirect
        rejected = served.case(upto=State.EVIDENCE_COMPLETE, review="pending")
        page = browser.get(f"/cases/{rejected}").text
        assert 'id="review-pending"' in page
        buttons = re.findall(r'class="decision" data-event="([a-z]+)"', page)
        assert buttons == ["confirmed", "rejected"]
        csrf = re.search(r'name="csrf-token" content="([^"]*)"', page)
        assert csrf is not None
        headers = {"X-CSRF-Token": csrf.group(1), "Idempotency-Key": "ui-1"}
        body = {"event": "rejected", "by": "someone else", "reason": "a shadow"}
        url = f"/api/v1/cases/{rejected}/events"
        response = browser.post(url, json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["by"] == "otto" and response.json()["source"] == "console"
        assert served.store.get(rejected).state is State.REJECTED
        confirmed = served.case(upto=State.EVIDENCE_COMPLETE, review="pending")
        headers["Idempotency-Key"] = "ui-2"
        url = f"/api/v1/cases/{confirmed}/events"
        response = browser.post(url, json={"event": "confirmed"}, headers=headers)
        assert response.status_code == 201 and response.json()["review"] == "confirmed"
        case = served.store.get(confirmed)
        assert case.state is State.EVIDENCE_COMPLETE and case.review == "confirmed"
        metrics = served.casesys.get("/metrics").text
        assert 'streetwatch_review_rejections_total{rule="cross-door-trading"} 1.0' in metrics


def test_viewers_see_no_decision_buttons(served: Served) -> None:
    users = UserStore(served.server.ctx.config.console.users_file)  # type: ignore[attr-defined]
    users.add("vera", "viewer", PASSWORD)
    case_id = served.case()
    with httpx.Client(base_url=served.server.url, timeout=30) as browser:
        assert browser.post("/login", data={"name": "vera", "password": PASSWORD}).is_redirect
        page = browser.get(f"/cases/{case_id}").text
        assert 'class="decision"' not in page
        csrf = re.search(r'name="csrf-token" content="([^"]*)"', page)
        assert csrf is not None
        headers = {"X-CSRF-Token": csrf.group(1), "Idempotency-Key": "v-1"}
        url = f"/api/v1/cases/{case_id}/events"
        assert browser.post(url, json={"event": "closed"}, headers=headers).status_code == 403
    # an operator on an acknowledged case: what the case system may decide
    with httpx.Client(base_url=served.server.url, timeout=30) as browser:
        UserStore(served.server.ctx.config.console.users_file).add(  # type: ignore[attr-defined]
            "olga", "operator", PASSWORD
        )
        assert browser.post("/login", data={"name": "olga", "password": PASSWORD}).is_redirect
        page = browser.get(f"/cases/{case_id}").text
        buttons = re.findall(r'class="decision" data-event="([a-z]+)"', page)
        assert buttons == ["confirmed", "rejected", "rectified", "closed"]
