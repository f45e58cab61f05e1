"""Counters and latency samples of the ingestion stage, readable by metrics and benchmarks."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    counters: Counter[str] = field(default_factory=Counter)
    received: int = 0
    """Messages received; written only by the MQTT network thread, so no lock."""
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    """Receive-to-journal-commit latency of recent messages, in seconds."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def dead_letter(self, reason: str) -> None:
        with self._lock:
            self.counters["dead_letters"] += 1
            self.counters[f"dead_letters.{reason}"] += 1

    def committed(self, received_monotonic: list[float]) -> None:
        now = time.monotonic()
        with self._lock:
            self.latencies_s.extend(now - t for t in received_monotonic)

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
