"""Child process for the crash tests: handles violations, killing itself (SIGKILL) at a named
point of the `kill_at`-th package, or running until the parent kills it."""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore
from evidence.keys import Signer
from evidence.service import EvidenceService
from tests.evidence.evidence_support import FOOTAGE, VideoRing, make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def violations(n: int):
    return [
        make_violation(START, i % 12, dwell_s=2.0 + i // 12, pre_s=0.5, post_s=0.5)
        for i in range(n)
    ]


def services(base: Path, ring: VideoRing, hook=None) -> EvidenceService:
    config = site_config(base)
    signer = Signer.load_or_create(base / "key.pem")
    builder = EvidenceBuilder(config, signer, ring, None, crash_hook=hook)
    return EvidenceService(builder, CaseStore(base / "var" / "cases.sqlite"))


def ring() -> VideoRing:
    return VideoRing.from_file(FOOTAGE, "cam-1", START, 16.0)


def main() -> None:
    base, point, kill_at, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    built = [0]

    def hook(name: str) -> None:
        if name == point and built[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if name == "head":
            built[0] += 1

    service = services(base, ring(), hook)
    print("ready", flush=True)
    for violation in violations(n):
        service.handle(violation)
    print("done", flush=True)


if __name__ == "__main__":
    main()
