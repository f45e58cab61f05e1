"""The fault suite's ledger: each test records what it tried and what was lost, and
`python -m tests.faults.reliability_table` turns the ledger into docs/reliability.md's table."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

LEDGER = Path(os.environ.get("STREETWATCH_RELIABILITY_LEDGER", REPO / "var" / "reliability.jsonl"))


@dataclass
class Reliability:
    test: str
    soak: bool

    def record(
        self, group: str, what: str, tried: int, lost: int, outside: int = 0, **detail: object
    ) -> None:
        """One row: `group` is "fault", "bad input" or "security", `what` the fault or input
        tried, `tried` how many times, `lost` readings/cases/packages streetwatch lost or
        doubled (must be 0), `outside` what the MQTT broker lost before streetwatch ever
        received it (acknowledged to the publisher, not yet saved when the broker was killed),
        reported in its own column."""
        row = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "test": self.test,
            "soak": self.soak,
            "group": group,
            "what": what,
            "tried": tried,
            "lost": lost,
            "outside": outside,
            "detail": detail,
        }
        LEDGER.parent.mkdir(parents=True, exist_ok=True)
        with LEDGER.open("a", encoding="utf-8") as ledger:
            ledger.write(json.dumps(row, default=str) + "\n")


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Reliability:
    return Reliability(request.node.nodeid, request.node.get_closest_marker("soak") is not None)
