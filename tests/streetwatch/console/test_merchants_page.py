"""Merchants' history and the field's figures in the console, on a real server: the merchants'
list and one merchant's page and API, `/api/v1/stats`, and the Overview's count of open
escalated cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from evidence.cases import State
from ingest.config import load_config
from tests.conftest import REPO
from tests.consolekit import serve_console
from tests.evidence.evidence_support import make_violation

PASSWORD = "a-long-enough-password"


@pytest.fixture
def console(tmp_path):
    config = load_config(REPO / "devices.yaml")
    merchants = [m.model_copy(update={"grade": "C"}) for m in config.merchants]
    server = serve_console(config.model_copy(update={"merchants": merchants}), tmp_path)
    server.ctx.users.add("vera", "viewer", PASSWORD)
    store = server.ctx.cases
    start = datetime.now(UTC) - timedelta(hours=2)
    ids = [store.open(make_violation(start, n), start)[0].case_id for n in range(3)]
    for case_id in ids:
        store.transition(case_id, State.EVIDENCE_COMPLETE)
    store.transition(ids[2], State.REJECTED)
    store.clear(ids[0], store.get(ids[0]).opened_at + timedelta(minutes=5))
    store.escalate_overdue()  # ids[1]: past its 15-minute deadline, still open
    server.ids = ids
    try:
        yield server
    finally:
        server.stop()


def _client(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30)
    assert client.post("/login", data={"name": "vera", "password": PASSWORD}).status_code == 303
    return client


def test_merchants_history_figures_and_escalations(console) -> None:
    vera = _client(console)
    merchants = vera.get("/api/v1/merchants").json()
    assert [m["merchant_id"] for m in merchants] == ["m-0001", "m-0002"]  # most offences first
    m, other = merchants
    assert other["offences"] == 0 and other["known"]
    assert (m["grade"], m["cases"], m["offences"], m["rejected"], m["escalated"]) == (
        "C",
        3,
        2,
        1,
        1,
    )
    history = vera.get("/api/v1/merchants/m-0001").json()
    assert sorted(c["case_id"] for c in history["cases"]) == sorted(console.ids)
    assert vera.get("/api/v1/merchants/m-9999").status_code == 404
    assert vera.get("/api/v1/merchants/..%2Fx").status_code in (404, 422)

    page = vera.get("/merchants")
    assert page.status_code == 200 and 'data-merchant="m-0001"' in page.text
    page = vera.get("/merchants/m-0001")
    assert page.status_code == 200 and f'href="/cases/{console.ids[1]}"' in page.text
    assert 'id="merchant-grade">C<' in page.text

    figures = vera.get("/api/v1/stats", params={"days": 1}).json()
    total = figures["total"]
    assert (total["opened"], total["cleared_by_box"], total["rejected"]) == (3, 1, 1)
    assert total["disposal_p50_s"] == 300.0 and total["escalations"] == 1
    assert vera.get("/api/v1/stats", params={"days": 0}).status_code == 422

    assert vera.get("/api/v1/overview").json()["escalated_open"] == 1
    assert 'id="ov-escalated"' in vera.get("/").text
    assert httpx.get(f"{console.url}/api/v1/stats").status_code == 401
