"""Counters of the ingestion stage, readable by metrics, the demo and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    counters: Counter[str] = field(default_factory=Counter)
    received: int = 0
    """Messages received; written only by the MQTT network thread, so no lock."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def dead_letter(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.counters["dead_letters"] += amount
            self.counters[f"dead_letters.{reason}"] += amount

    def get(self, name: str) -> int:
        if name == "received":
            return self.received
        with self._lock:
            return self.counters[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {**self.counters, "received": self.received}

    def dead_letters_by_reason(self) -> dict[str, int]:
        prefix = "dead_letters."
        return {k[len(prefix) :]: v for k, v in self.snapshot().items() if k.startswith(prefix)}
