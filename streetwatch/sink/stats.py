"""Counters and gauges of the sink, readable by metrics, `sink status` and the benchmark."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class SinkStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._gauges: dict[str, Any] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def set(self, name: str, value: Any) -> None:
        with self._lock:
            self._gauges[name] = value

    def get(self, name: str) -> Any:
        with self._lock:
            return self._gauges.get(name, self._counters[name])

    def reject(self, reason: str) -> None:
        with self._lock:
            self._counters["rejected"] += 1
            self._counters[f"rejected.{reason}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self._counters, **self._gauges}
