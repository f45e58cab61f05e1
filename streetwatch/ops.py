"""Operations endpoint: Prometheus metrics at /metrics and a health check at /healthz.

Bound to loopback by default: expose it through the box's reverse proxy or a Prometheus agent on
the box, not to the street network.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

GAUGES = frozenset(
    {
        "queue_depth",
        "feed_backlog",
        "sink_backlog",
        "backlog",
        "journal_bytes",
        "connected",
        "free_bytes",
        "disk_full",
    }
)
"""Figures that go up and down; everything else a stage reports is a counter."""


class StageCollector(Collector):
    """Turns each stage's flat counters into `streetwatch_<stage>_<name>` metrics at scrape time."""

    def __init__(self, sources: Callable[[], Mapping[str, Mapping[str, float]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for stage, counters in sorted(self._sources().items()):
            labelled: dict[str, dict[str, float]] = {}
            for name, value in sorted(counters.items()):
                base, _, label = name.partition(".")
                labelled.setdefault(base, {})[label] = float(value)
            for base, values in labelled.items():
                metric = f"streetwatch_{stage}_{_safe(base)}"
                family: CounterMetricFamily | GaugeMetricFamily
                if base in GAUGES:
                    family = GaugeMetricFamily(metric, f"{stage} {base}", labels=["kind"])
                else:
                    family = CounterMetricFamily(metric, f"{stage} {base}", labels=["kind"])
                for label, value in values.items():
                    family.add_metric([label], value)
                yield family


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


class OpsPortError(OSError):
    """The ops endpoint cannot listen where it was asked to (port taken, address not ours)."""


class OpsServer:
    def __init__(
        self,
        sources: Callable[[], Mapping[str, Mapping[str, float]]],
        health: Callable[[], tuple[bool, Mapping[str, object]]],
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StageCollector(sources))
        registry, check = self.registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif self.path == "/healthz":
                    ok, detail = check()
                    body = json.dumps({"ok": ok, **detail}, default=str).encode()
                    self._send(200 if ok else 503, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            where = f"ops endpoint (/metrics, /healthz) on {host}:{port}"
            raise OpsPortError(f"{where}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sw-ops", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
