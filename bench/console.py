"""The operator console under load: the case list at 100,000 cases, a case page, a live frame
and a zone save, over real HTTP, with the demo site's market camera (vtest.avi through the real
model) running in the same process as `streetwatch run` runs them.

The case store is filled with 100,000 cases (six rules over the demo's zones and devices, a
year of them, every state past `acknowledged` so the running pipeline has nothing to build or
deliver for them) through the store's own SQL, then the pipeline and the console start
(uvicorn via `ConsoleServer`); a user logs in over HTTP. Each figure is printed beside a limit
measured in the same run: the same list read straight from SQLite (`CaseQuery`, no HTTP), and a
"hello" route on the same server behind the same login (the floor of any request).

    .venv/bin/python bench/console.py [--cases 100000] [--requests 200] [--no-pipeline]

The limit beside the headline: `limit_case_list_p99_ms` = SQLite alone p99 + hello p99;
`ratio_to_sqlite_plus_hello` = the list's p99 over it.

Last line: `case_list_p99_ms: N` (JSON and HTML list requests together). Target: < 200 ms for
the case list and the case page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evidence.case_query import CaseFilter, CaseQuery  # noqa: E402
from evidence.cases import NOT_ESCALATED, CaseStore, State  # noqa: E402
from evidence.settings import evidence_paths  # noqa: E402
from ingest.config import EvidenceMqttFeed, load_config  # noqa: E402
from streetwatch.console import ConsoleContext, ConsoleServer, create_app  # noqa: E402
from streetwatch.demo import demo_rules  # noqa: E402
from streetwatch.embedded import start_embedded_broker  # noqa: E402
from streetwatch.localbroker import free_port  # noqa: E402
from streetwatch.logs import setup_logging  # noqa: E402
from streetwatch.users import UserStore  # noqa: E402

PASSWORD = "bench-console-pass-1"
MARKET = "cam-market-01"
EXTRA_CAMERAS = "  - id: cam-arcade-02\n"
RULES = (
    ("cross-door-trading", "市容管理/跨门经营", ["cam-market-01", "cam-arcade-02"],
     ["shopfront-wang", "shopfront-snacks"], ["m-0001", "m-0002"]),
    ("stray-non-motor", "市容管理/非机动车乱停放", ["cam-market-01", "cam-lane-03", "cam-kerb-04"],
     ["sidewalk-east", "no-parking-lane", "sidewalk-bank"], [None]),
    ("no-parking-vehicle", "市容管理/机动车乱停放", ["cam-market-01", "cam-kerb-04"],
     ["no-parking-kerb", "no-parking-bank", "no-parking-centre"], [None]),
    ("fire-lane-occupied", "消防管理/占用消防通道",
     ["geomag-fl-01", "geomag-fl-02", "geomag-fl-03"], [None], [None]),
    ("muck-truck-off-route", "渣土管理/未按规定路线行驶", ["gps-muck-07"], [None], [None]),
    ("street-vending-stall", "市容管理/占道经营", ["cam-market-01", "drone-01"],
     ["sidewalk-east", "shopfront-wang"], [None]),
)  # fmt: skip
STATES = [
    s.value for s in State if s not in (State.OPENED, State.EVIDENCE_COMPLETE, State.SUBMITTED)
]


def fill(path: Path, n: int, seed: int = 11) -> float:
    """n cases as the store writes them (violation JSON with observations, as the rules emit
    it), in one transaction; returns seconds taken."""
    started = time.perf_counter()
    rnd = random.Random(seed)
    store = CaseStore(path)
    end = datetime.now(UTC) - timedelta(days=1)
    span = 365 * 86400
    rows = []
    for i in range(n):
        rule, category, devices, zones, parties = RULES[i % len(RULES)]
        opened = end - timedelta(seconds=span * (n - i) / n - rnd.random() * 60)
        chosen = list(dict.fromkeys([rnd.choice(devices) for _ in range(rnd.choice((1, 1, 1, 2)))]))
        zone = rnd.choice(zones)
        state = rnd.choice(STATES)
        vid = f"{rnd.getrandbits(80):020x}"
        box = [
            rnd.uniform(0, 600),
            rnd.uniform(0, 400),
            rnd.uniform(600, 760),
            rnd.uniform(400, 570),
        ]
        observations = [
            {"kind": "presence", "device_id": chosen[0], "subject": "car", "subject_id": str(i),
             "first_seen": opened.isoformat(), "last_seen": opened.isoformat(), "zone_id": zone,
             "frame": {"device_id": chosen[0], "index": i * 10 + k, "box": box, "confidence": 0.8}}
            for k in range(3)
        ]  # fmt: skip
        violation = {
            "violation_id": vid, "rule_id": rule, "rule_name": rule, "category": category,
            "severity": "normal", "site_id": "demo-street", "situation": f"{rule}/{zone}/{i}",
            "opened_at": opened.isoformat(), "window_start": opened.isoformat(),
            "window_end": opened.isoformat(), "devices": chosen, "subject": "car",
            "subject_id": str(i), "zone_id": zone, "zone_kind": None, "party": rnd.choice(parties),
            "location": {"lon": 121.437 + rnd.random() * 1e-3, "lat": 31.195 + rnd.random() * 1e-3},
            "dispose_within_s": 1800.0, "thresholds": {"dwell_s": 20.0},
            "observations": observations,
        }  # fmt: skip
        ts = opened.timestamp()
        deadline = ts + 1800
        escalated = deadline + 1 if state not in {s.value for s in NOT_ESCALATED} else None
        rows.append(
            (f"{opened:%Y%m%d}-{vid}", vid, state, rule, category, "demo-street", ts, deadline,
             escalated, ts, json.dumps(violation, ensure_ascii=False))
        )  # fmt: skip
    with store.lock:
        store.db.execute("BEGIN")
        store.db.executemany(
            "INSERT INTO cases (case_id, violation_id, state, rule_id, category, site_id,"
            " opened_at, deadline, escalated_at, updated_at, violation)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        store.db.execute("COMMIT")
    store.close()
    return time.perf_counter() - started


def site(folder: Path) -> Path:
    """devices.yaml with the market camera only (the demo's first camera, on vtest.avi)."""
    text = (REPO / "devices.yaml").read_text(encoding="utf-8")
    text = text[: text.index(EXTRA_CAMERAS)].replace("../shared/", f"{REPO.parent}/shared/")
    doc = yaml.safe_load(text)
    for device in doc["devices"]:
        if str(device.get("stream", "")).startswith("var/"):
            device["stream"] = str(REPO / device["stream"])
    doc["storage"] = {"root": str(folder / "var")}
    doc["console"] = {"users_file": str(folder / "users.yaml")}
    if doc.get("jt808"):  # the demo's fixed TCP port may be taken (a demo, a test)
        doc["jt808"] = {**doc["jt808"], "host": "127.0.0.1", "port": free_port()}
    path = folder / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - started)
    return out


def line(name: str, samples: list[float], limit: str) -> tuple[float, float]:
    p50, p99 = percentiles(samples)
    print(f"{name:<34} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms   ({len(samples)} req; {limit})")
    return p50, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-pipeline", action="store_true", help="the console alone")
    parser.add_argument("--case-wait-s", type=float, default=120.0)
    args = parser.parse_args()
    setup_logging("WARNING")
    bench_started = time.monotonic()
    tmp = tempfile.TemporaryDirectory(prefix="bench-console-")
    folder = Path(tmp.name)
    config_path = site(folder)
    config = load_config(config_path)
    config = config.model_copy(
        update={
            "broker": config.broker.model_copy(
                update={"url": "embedded", "embedded_port": free_port()}
            ),
        }
    )
    feed = config.evidence.feed.model_copy(update={"mqtt": EvidenceMqttFeed()})
    config = config.model_copy(
        update={"evidence": config.evidence.model_copy(update={"feed": feed})}
    )
    paths = evidence_paths(config)
    took = fill(paths.cases, args.cases)
    print(f"filled {args.cases} cases in {took:.1f} s ({paths.cases})")

    pipeline = broker = None
    if args.no_pipeline:
        store = CaseStore(paths.cases)
        ctx = ConsoleContext.for_site(config, store, config_path=config_path)
    else:
        from streetwatch.pipeline import Pipeline, PipelineOptions

        config, broker = start_embedded_broker(config)
        options = PipelineOptions(rules_dir=demo_rules(folder), loop_video=True, sink=False)
        pipeline = Pipeline(config, options)
        ctx = ConsoleContext.for_site(
            config,
            pipeline.cases,
            sources=pipeline.stage_counters,
            health=pipeline.health,
            config_path=config_path,
            rules_dir=options.rules_dir,
            pipeline=pipeline,
        )
    app = create_app(ctx)

    @app.get("/bench/hello", include_in_schema=False)
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    server = ConsoleServer(app, port=0).start()
    if pipeline is not None:
        pipeline.start(wait_s=30)
        print(f"pipeline running: {len(pipeline.cameras)} camera(s) ({MARKET} on vtest.avi)")
    UserStore(config.console.users_file).add("bench", "operator", PASSWORD)  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/login", data={"name": "bench", "password": PASSWORD})
            assert response.status_code == 303, response.text
            page = client.get("/cases").text
            cookies = dict(client.cookies)
        csrf_match = re.search(r'name="csrf-token" content="([^"]*)"', page)
        assert csrf_match
        # the client in a process of its own, as a browser is: it does not share the
        # server's GIL
        job = (args, server.url, cookies, csrf_match.group(1), paths.cases, config.site.timezone)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(client_process, *job, pipeline is not None, bench_started).result()
    finally:
        server.stop()
        if pipeline is not None:
            pipeline.stop()
        if broker is not None:
            broker.stop()
        tmp.cleanup()


@dataclass
class Reply:
    status_code: int
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """A keep-alive HTTP/1.1 client on the standard library's http.client, as a browser keeps
    its connection. Note: small responses on a kept-alive connection take ~44 ms here, whatever
    the client: ConsoleServer's listening socket is made with proto 0, so asyncio does not set
    TCP_NODELAY on the connections it accepts and Nagle holds the body behind the headers until
    the client's delayed ACK. That floor shows in the "hello" line."""

    def __init__(self, url: str, cookies: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())

    def request(self, method: str, path: str, params: dict | None = None, **kw: Any) -> Reply:
        target = f"{path}?{urlencode(params)}" if params else path
        headers = {"Cookie": self.cookie, **kw.get("headers", {})}
        body = None
        if "json" in kw:
            body = json.dumps(kw["json"]).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, target, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # uvicorn closes a connection idle for 5 s (the SQLite-alone phase can take that
            # long under load); a browser reconnects and sends again, so does this client
            self.conn.close()
            self.conn.request(method, target, body=body, headers=headers)
            response = self.conn.getresponse()
        return Reply(response.status, response.read(), target)

    def get(self, path: str, params: dict | None = None) -> Reply:
        return self.request("GET", path, params)

    def put(self, path: str, **kw: Any) -> Reply:
        return self.request("PUT", path, **kw)

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *_: object) -> None:
        self.conn.close()


def client_process(
    args: argparse.Namespace,
    url: str,
    cookies: dict[str, str],
    csrf: str,
    cases_path: Path,
    timezone: str,
    running: bool,
    bench_started: float,
) -> int:
    with Http(url, cookies) as client:
        return measure(args, client, csrf, cases_path, ZoneInfo(timezone), running, bench_started)


FILTERS = [
    {},
    {"state": "closed"},
    {"rule": "stray-non-motor"},
    {"zone": "sidewalk-east"},
    {"device": "cam-kerb-04"},
    {"rule": "no-parking-vehicle", "state": "confirmed"},
    {"device": "cam-market-01", "rule": "cross-door-trading"},
]


def list_params(i: int) -> dict[str, object]:
    """A filter and a page (the first pages mostly; now and then a deep one)."""
    params: dict[str, object] = dict(FILTERS[i % len(FILTERS)])
    if i % 5 == 4:
        params["since"] = "2025-01-01"
    params["page"] = 1 + (i * 37) % 40 if i % 4 == 3 else 1 + i % 3
    return params


def measure(
    args: argparse.Namespace,
    client: Http,
    csrf: str,
    cases_path: Path,
    tz: tzinfo,
    running: bool,
    bench_started: float,
) -> int:
    n = args.requests

    def ok(response: Reply) -> Reply:
        if response.status_code >= 400:
            raise RuntimeError(
                f"{response.request.url}: {response.status_code} {response.text[:200]}"
            )
        return response

    for i in range(20):  # warm-up: connections, templates, the device side table
        ok(client.get("/api/v1/cases", params=list_params(i)))
        ok(client.get("/cases", params=list_params(i)))
    hello = timed(n, lambda i: ok(client.get("/bench/hello")))
    api = timed(n, lambda i: ok(client.get("/api/v1/cases", params=list_params(i))))
    html = timed(n, lambda i: ok(client.get("/cases", params=list_params(i))))

    query = CaseQuery(cases_path)
    filters = []
    for i in range(n):
        p = list_params(i)
        since = datetime(2025, 1, 1, tzinfo=tz) if "since" in p else None
        keys = ("rule", "state", "zone", "device")
        filters.append((CaseFilter(since=since, **{k: p.get(k) for k in keys}), int(p["page"])))  # type: ignore[arg-type]
    raw = timed(n, lambda i: query.page(filters[i][0], filters[i][1], 50))
    query.close()

    print()
    print(f"console at {args.cases} cases, {'beside the running pipeline' if running else 'alone'}")
    _, hello99 = line("hello (same server, same login)", hello, "the floor of any request")
    _, raw99 = line("case list: SQLite alone", raw, "CaseQuery.page, no HTTP")
    limit = f"limit: SQLite p99 {raw99:.1f} ms + hello p99 {hello99:.1f} ms"
    line("case list: JSON API", api, limit)
    line("case list: HTML page", html, limit)
    _, both99 = percentiles(api + html)

    case_id = wait_for_case(client, args.case_wait_s if running else 0.0)
    if case_id is None:
        print("case page: no packaged case (the pipeline opened none in time)")
    else:
        detail = ok(client.get(f"/api/v1/cases/{case_id}")).json()
        ok(client.get(f"/cases/{case_id}"))  # warm-up: the first render compiles the template
        files = len((detail["verification"] or {}).get("files", []))
        size = sum(f["size"] or 0 for f in (detail["verification"] or {}).get("files", []))
        why = f"verifies {files} files, {size / 1e6:.1f} MB, on each request"
        m = max(20, n // 4)
        line("case page: JSON", timed(m, lambda i: ok(client.get(f"/api/v1/cases/{case_id}"))), why)
        line("case page: HTML", timed(m, lambda i: ok(client.get(f"/cases/{case_id}"))), why)

    live_url = f"/api/v1/cameras/{MARKET}/live.jpg"
    first = client.get(live_url)
    if first.status_code != 200:
        print(f"live frame: not available ({first.status_code})")
    else:
        line("live frame", timed(n // 2, lambda i: ok(client.get(live_url))), "JPEG encode")

    zones_url = f"/api/v1/cameras/{MARKET}/zones"
    current = client.get(zones_url)
    if current.status_code != 200:
        print(f"zone save: not available ({current.status_code})")
    else:
        saves = []
        failed = None
        for _ in range(20):
            body = client.get(zones_url).json()
            started = time.perf_counter()
            response = client.put(
                zones_url,
                json={"zones": body["zones"], "version": body["version"]},
                headers={"X-CSRF-Token": csrf},
            )
            saves.append(time.perf_counter() - started)
            if response.status_code >= 400:
                failed = f"{response.status_code} {response.text[:160]}"
                break
        if failed:
            print(f"zone save: not available ({failed})")
        else:
            line("zone save", saves, "devices.yaml checked, written, applied")

    print(f"bench took {time.monotonic() - bench_started:.0f} s")
    print(f"limit_case_list_p99_ms: {raw99 + hello99:.1f} (SQLite alone + hello, both p99)")
    print(f"ratio_to_sqlite_plus_hello: {both99 / (raw99 + hello99):.2f}")
    print(f"case_list_p99_ms: {both99:.1f}")
    return 0


def wait_for_case(client: Http, wait_s: float) -> str | None:
    """A case with a package: one the running pipeline opened (bounded wait)."""
    deadline = time.monotonic() + wait_s
    since = (datetime.now(UTC) - timedelta(hours=6)).isoformat()
    while True:
        items = client.get("/api/v1/cases", params={"since": since}).json()["items"]
        packaged = [i["case_id"] for i in items if i["packaged"]]
        if packaged:
            return packaged[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
