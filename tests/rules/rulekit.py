"""Helpers for the rules tests (imported as `rulekit`): a small site and observation builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig
from rules.schema import RuleSet, load_rules

T0 = datetime(2026, 11, 23, 2, 0, 0, tzinfo=UTC)
"""10:00 in Asia/Shanghai, a Monday."""


def site() -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "t-site", "timezone": "Asia/Shanghai"},
            "merchants": [
                {
                    "id": "m-1",
                    "name": "Shop 1",
                    "licence_no": "L1",
                    "shopfront": [[121.0, 31.0], [121.001, 31.0], [121.001, 31.001]],
                }
            ],
            "devices": [
                {
                    "id": "cam-1",
                    "kind": "camera",
                    "location": {"lat": 31.0, "lon": 121.0},
                    "zones": [
                        {
                            "id": "shop-1",
                            "kind": "shopfront",
                            "merchant": "m-1",
                            "polygon": [[0, 0], [10, 0], [10, 10]],
                        },
                        {
                            "id": "walk-1",
                            "kind": "sidewalk",
                            "polygon": [[0, 0], [10, 0], [10, 10]],
                        },
                        {
                            "id": "np-1",
                            "kind": "no_parking",
                            "polygon": [[0, 0], [10, 0], [10, 10]],
                        },
                        {
                            "id": "cam-bay-1",
                            "kind": "fire_lane",
                            "polygon": [[0, 0], [10, 0], [10, 10]],
                        },
                        {
                            "id": "cam-bay-2",
                            "kind": "fire_lane",
                            "polygon": [[0, 0], [10, 0], [10, 10]],
                        },
                    ],
                },
                {
                    "id": "mag-1",
                    "kind": "geomagnetic",
                    "bay": "bay-1",
                    "location": {"lat": 31.0001, "lon": 121.0001},
                },
                {"id": "mag-2", "kind": "geomagnetic", "bay": "bay-2"},
                {
                    "id": "truck-1",
                    "kind": "gps",
                    "zones": [
                        {
                            "id": "school",
                            "kind": "restricted",
                            "polygon": [[121.0, 31.0], [121.01, 31.0], [121.01, 31.01]],
                        }
                    ],
                },
            ],
        }
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def obs(
    kind: str = "presence",
    *,
    device: str = "cam-1",
    subject: str = "bicycle",
    sid: str = "7",
    first: float = 0.0,
    last: float = 0.0,
    zone: str | None = "np-1",
    zone_kind: str | None = None,
    state: str | None = None,
    count: int = 1,
) -> Observation:
    return Observation(
        kind=ObservationKind(kind),
        device_id=device,
        subject=subject,
        subject_id=sid,
        first_seen=at(first),
        last_seen=at(last),
        zone_id=zone,
        zone_kind=zone_kind,
        state=state,
        count=count,
        location=GeoPoint(121.0, 31.0) if device == "cam-1" else None,
    )


def write_rules(folder: Path, *rules: dict[str, Any], name: str = "rules.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump({"rules": list(rules)}, allow_unicode=True))
    return folder


def rule(rule_id: str = "r", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": rule_id, "name": f"rule {rule_id}", "category": "test/item"}
    base.update(fields)
    return base


def ruleset(tmp_path: Path, *rules: dict[str, Any]) -> RuleSet:
    return load_rules(write_rules(tmp_path / "rules", *rules), site())


def scenario_recording(
    path: Path, config: SiteConfig, duration_s: float, start: datetime, seed: int = 1
) -> Path:
    """Record the readings of a `streetwatch/scenario.py` run, decoded as ingestion would."""
    from ingest.decoders import decode
    from ingest.registry import DeviceRegistry
    from rules.recording import RecordingWriter
    from streetwatch.scenario import build_scenario

    registry = DeviceRegistry(config)
    messages = build_scenario(config, duration_s=duration_s, seed=seed, start=start)
    with RecordingWriter(path, site_id=config.site.id) as writer:
        for message in messages:
            route = registry.route(message.topic)
            received = start + timedelta(seconds=message.at_s)
            ctx = route.context(message.topic, received, message.user_properties, config.ingest)
            for reading in decode(ctx, message.payload):
                writer.reading(reading)
    return path
