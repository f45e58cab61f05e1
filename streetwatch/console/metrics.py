"""Prometheus text for /metrics: every stage's flat counters as `streetwatch_<stage>_<name>`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

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
