"""The cases API and pages on a real uvicorn server, over real evidence packages (real footage
through the real builder, real journal readings, the box's real Ed25519 key)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore, State
from evidence.keys import Signer
from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from ingest.config import SiteConfig
from ingest.journal import Journal
from streetwatch.console import ConsoleServer
from streetwatch.users import UserStore
from tests.consolekit import serve_console
from tests.evidence.evidence_support import (
    VideoRing,
    ensure_vtest,
    fill_journal,
    make_violation,
    site_config,
)

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PASSWORD = "cases-api-pass-1"


@dataclass
class Served:
    server: ConsoleServer
    config: SiteConfig
    store: CaseStore
    cases: list[str]
    """Case ids, in the order they were opened: three packaged, the last without a package."""
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("cases-api")
    ring = VideoRing.from_file(ensure_vtest(), "cam-1", START, 30.0)
    config = site_config(folder)
    paths = evidence_paths(config)
    journal = Journal(folder / "journal.sqlite")
    fill_journal(journal, START, 60)
    signer = Signer.load_or_create(paths.key)
    builder = EvidenceBuilder(config, signer, ring, journal, root=paths.root)
    store = CaseStore(paths.cases)
    service = EvidenceService(builder, store)
    ids = []
    for n, devices in enumerate([("cam-1", "mag-1", "truck-1"), ("cam-1",), ("cam-1", "mag-1")]):
        case = service.handle(make_violation(START, n, devices=devices))
        assert case.state is State.EVIDENCE_COMPLETE
        ids.append(case.case_id)
    unpackaged, _ = store.open(make_violation(START, 7, devices=("mag-1",)))
    ids.append(unpackaged.case_id)
    server = serve_console(config, folder / "console", cases=store)
    users = UserStore(server.ctx.config.console.users_file)  # type: ignore[attr-defined]
    users.add("otto", "operator", PASSWORD)
    client = httpx.Client(base_url=server.url, timeout=30)
    response = client.post("/login", data={"name": "otto", "password": PASSWORD})
    assert response.status_code == 303, response.text
    try:
        yield Served(server, config, store, ids, client)
    finally:
        client.close()
        server.stop()
        journal.close()
        store.close()


def test_list_filters_pages_and_counts(served: Served) -> None:
    body = served.client.get("/api/v1/cases").json()
    assert body["total"] == 4 and body["page"] == 1 and body["pages"] == 1
    assert [i["case_id"] for i in body["items"]] == served.cases[::-1]  # newest first
    first = next(i for i in body["items"] if i["case_id"] == served.cases[0])
    assert first["rule_id"] == "cross-door-trading"
    assert first["zone"] == "shopfront-wang" and first["zone_kind"] == "shopfront"
    assert first["devices"] == ["cam-1", "mag-1", "truck-1"]
    assert first["party"] == "m-0001" and first["packaged"] is True
    assert first["state"] == "evidence_complete" and first["deadline"]

    def ids(**params: object) -> list[str]:
        response = served.client.get("/api/v1/cases", params=params)
        assert response.status_code == 200, response.text
        return [i["case_id"] for i in response.json()["items"]]

    c = served.cases
    assert ids(device="truck-1") == [c[0]]
    assert ids(device="mag-1") == [c[3], c[2], c[0]]
    assert ids(device="mag-1", state="opened") == [c[3]]
    assert ids(state="evidence_complete", zone="shopfront-wang") == [c[2], c[1], c[0]]
    assert ids(zone="nowhere") == [] and ids(rule="no-such-rule") == []
    assert ids(rule="cross-door-trading", device="cam-1") == [c[2], c[1], c[0]]
    opened = [served.store.get(x).opened_at for x in c]
    assert ids(since=opened[1].isoformat(), until=opened[3].isoformat()) == [c[2], c[1]]
    # a bare date is a whole day in the site's time zone (Asia/Shanghai: 16:00 the day before)
    assert len(ids(since="2026-11-23", until="2026-11-23")) == 4
    assert ids(until="2026-11-22") == []
    page = served.client.get("/api/v1/cases", params={"per_page": 3, "page": 2}).json()
    assert (page["total"], page["pages"], [i["case_id"] for i in page["items"]]) == (4, 2, [c[0]])
    assert served.client.get("/api/v1/cases", params={"state": "lost"}).status_code == 422
    assert served.client.get("/api/v1/cases", params={"since": "yesterday"}).status_code == 400
    assert served.client.get("/api/v1/cases", params={"per_page": 10_000}).status_code == 422


def test_case_detail_verifies_its_package(served: Served) -> None:
    case_id = served.cases[0]
    body = served.client.get(f"/api/v1/cases/{case_id}").json()
    assert body["case"]["case_id"] == case_id and body["case"]["package"]
    assert body["manifest"]["case_id"] == case_id
    assert body["manifest"]["party"]["id"] == "m-0001"
    assert [e["event"] for e in body["events"]] == ["opened", "evidence_complete"]
    check = body["verification"]
    assert check["ok"] is True and check["pinned"] is True and check["findings"] == []
    assert check["signature"]["status"] == "ok"
    assert [c["status"] for c in check["chain"]] == ["ok", "ok"]
    assert "genesis" in check["chain"][0]["detail"]
    paths = {f["path"]: f for f in check["files"]}
    assert {"media/cam-1/clip.mp4", "data/sensor_series.json", "data/gps_track.geojson"} <= set(
        paths
    )
    assert all(f["status"] == "ok" for f in check["files"])
    # the next link names this one; the newest is the ledger's head
    second = served.client.get(f"/api/v1/cases/{served.cases[1]}").json()["verification"]
    assert "link 2: names the manifest of case " + case_id in second["chain"][0]["detail"]
    newest = served.client.get(f"/api/v1/cases/{served.cases[2]}").json()["verification"]
    assert [c["status"] for c in newest["chain"]] == ["ok", "ok", "ok"]
    unpackaged = served.client.get(f"/api/v1/cases/{served.cases[3]}").json()
    assert unpackaged["verification"] is None and unpackaged["manifest"] is None


def test_tampered_file_is_reported(served: Served) -> None:
    case_id = served.cases[1]
    package = Path(served.store.get(case_id).package or "")
    snapshot = package / "media/cam-1/confirmed.raw.jpg"
    original = snapshot.read_bytes()
    snapshot.write_bytes(original + b"\0")
    try:
        check = served.client.get(f"/api/v1/cases/{case_id}").json()["verification"]
        assert check["ok"] is False
        assert [(f["kind"], f["where"]) for f in check["findings"]] == [
            ("changed_file", "media/cam-1/confirmed.raw.jpg")
        ]
        bad = [f for f in check["files"] if f["status"] == "bad"]
        assert [f["path"] for f in bad] == ["media/cam-1/confirmed.raw.jpg"]
        page = served.client.get(f"/cases/{case_id}").text
        assert "FAILS verification" in page and "changed_file" in page
    finally:
        snapshot.write_bytes(original)
    assert served.client.get(f"/api/v1/cases/{case_id}").json()["verification"]["ok"] is True


def test_files_media_types_and_ranges(served: Served) -> None:
    case_id = served.cases[0]
    base = f"/api/v1/cases/{case_id}/files"
    clip = served.client.get(f"{base}/media/cam-1/clip.mp4")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert clip.headers["accept-ranges"] == "bytes"
    data = clip.content
    # H.264 in MP4 with its index (moov) in front of the media data: playable while loading
    assert data[4:8] == b"ftyp" and 0 < data.find(b"moov") < data.find(b"mdat")
    part = served.client.get(f"{base}/media/cam-1/clip.mp4", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = served.client.get(f"{base}/media/cam-1/clip.mp4", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    for rel, kind in [
        ("media/cam-1/confirmed.annotated.jpg", "image/jpeg"),
        ("data/sensor_series.json", "application/json"),
        ("data/gps_track.geojson", "application/geo+json"),
        ("manifest.json", "application/json"),
    ]:
        response = served.client.get(f"{base}/{rel}")
        assert response.status_code == 200, rel
        assert response.headers["content-type"].startswith(kind), rel
    jpeg = served.client.get(f"{base}/media/cam-1/confirmed.raw.jpg").content
    assert jpeg[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cases/{case}/files/../../../etc/passwd",
        "/api/v1/cases/{case}/files/%2e%2e/%2e%2e/keys/box_ed25519.pem",
        "/api/v1/cases/{case}/files/media/../../../keys/box_ed25519.pem",
        "/api/v1/cases/{case}/files//etc/passwd",
        "/api/v1/cases/{case}/files/media/cam-1",
        "/api/v1/cases/{case}/files/media/cam-1/nothing.jpg",
        "/api/v1/cases/{case}/files/.ledger/head.json",
        "/api/v1/cases/..%2f..%2fkeys/files/box_ed25519.pem",
        "/api/v1/cases/%2e%2e/files/manifest.json",
        "/api/v1/cases/no-such-case/files/manifest.json",
        "/api/v1/cases/{unpackaged}/files/manifest.json",
        "/api/v1/cases/no-such-case",
        "/cases/no-such-case",
    ],
)
def test_no_path_leaves_the_package(served: Served, path: str) -> None:
    url = path.format(case=served.cases[0], unpackaged=served.cases[3])
    # sent as written (no client-side normalisation of dot segments)
    response = served.client.send(served.client.build_request("GET", httpx.URL(url)))
    assert response.status_code == 404, (url, response.status_code, response.text[:200])
    assert b"PRIVATE KEY" not in response.content and b"root:" not in response.content


def test_extra_file_in_the_package_is_not_served(served: Served) -> None:
    case_id = served.cases[2]
    package = Path(served.store.get(case_id).package or "")
    extra = package / "media/cam-1/planted.jpg"
    extra.write_bytes(b"\xff\xd8 not evidence")
    try:
        base = f"/api/v1/cases/{case_id}"
        assert served.client.get(f"{base}/files/media/cam-1/planted.jpg").status_code == 404
        check = served.client.get(base).json()["verification"]
        assert [f["kind"] for f in check["findings"]] == ["extra_file"]
    finally:
        extra.unlink()


def test_anonymous_callers_are_refused(served: Served) -> None:
    anonymous = httpx.Client(base_url=served.url, timeout=10)
    try:
        case_id = served.cases[0]
        for url in (
            "/api/v1/cases",
            f"/api/v1/cases/{case_id}",
            f"/api/v1/cases/{case_id}/files/manifest.json",
        ):
            assert anonymous.get(url).status_code == 401, url
        page = anonymous.get(f"/cases/{case_id}")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    finally:
        anonymous.close()


def test_pages_render_the_list_and_a_case(served: Served) -> None:
    listing = served.client.get("/cases", params={"device": "mag-1"})
    assert listing.status_code == 200
    rows = re.findall(r'<tr class="case-row[^"]*" data-case="([^"]+)"', listing.text)
    assert rows == [served.cases[3], served.cases[2], served.cases[0]]
    page = served.client.get(f"/cases/{served.cases[0]}").text
    assert "evidence package verifies" in page
    assert f"/api/v1/cases/{served.cases[0]}/files/media/cam-1/clip.mp4" in page
    assert 'type="video/mp4"' in page and "Wang&#39;s Fruit" in page
    assert served.client.get("/cases", params={"since": "nonsense"}).status_code == 200


def test_openapi_describes_the_cases_api(served: Served) -> None:
    spec = served.client.get("/api/openapi.json").json()
    assert {
        "/api/v1/cases",
        "/api/v1/cases/{case_id}",
        "/api/v1/cases/{case_id}/files/{path}",
    } <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"CaseList", "CaseItem", "CaseDetail", "Verification"} <= set(schemas)


def test_list_keeps_up_with_new_cases(served: Served) -> None:
    """The device side table catches up with cases opened after the first query."""
    before = served.client.get("/api/v1/cases", params={"device": "truck-1"}).json()["total"]
    extra, _ = served.store.open(
        make_violation(START + timedelta(hours=1), 9, devices=("truck-1",))
    )
    try:
        after = served.client.get("/api/v1/cases", params={"device": "truck-1"}).json()
        assert after["total"] == before + 1 and after["items"][0]["case_id"] == extra.case_id
    finally:
        with served.store.lock:
            served.store.db.execute("DELETE FROM cases WHERE case_id = ?", (extra.case_id,))
            served.store.db.execute("DELETE FROM case_devices WHERE case_id = ?", (extra.case_id,))
