"""Merchants' grades (三级分级管理) in devices.yaml and rules that depend on them: the catalog's
grade C variant of cross-door trading counts goods after one minute, the others after three, and
a shop front gets one case either way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import SiteConfig, Zone, load_config
from rules.engine import Engine
from rules.model import Clause, Condition, When
from rules.schema import load_rules

MONDAY_10 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai


def _graded(grade: str | None, extra: list | None = None) -> SiteConfig:
    config = load_config("devices.yaml")
    merchants = [
        m.model_copy(update={"grade": grade}) if m.id == "m-0001" else m for m in config.merchants
    ]
    return config.model_copy(update={"merchants": merchants + (extra or [])})


def _goods(sid: str, stay_s: int, start_s: int = 0) -> list[Observation]:
    first = MONDAY_10 + timedelta(seconds=start_s)
    return [
        Observation(
            ObservationKind.PRESENCE,
            "cam-market-01",
            "goods",
            sid,
            first,
            first + timedelta(seconds=t),
            zone_id="shopfront-wang",
            zone_kind="shopfront",
            location=GeoPoint(121.4373, 31.1952),
        )
        for t in range(stay_s + 1)
    ]


def _run(engine: Engine, observations: list[Observation]) -> list:
    out = []
    for o in observations:
        out += engine.process(o)
    return out


@pytest.mark.parametrize(
    ("grade", "rule", "after"),
    [
        ("C", "cross-door-trading-grade-c", timedelta(minutes=1)),
        ("B", "cross-door-trading", timedelta(minutes=3)),
        ("A", "cross-door-trading", timedelta(minutes=3)),
        (None, "cross-door-trading", timedelta(minutes=3)),
    ],
)
def test_grade_picks_the_rule_and_its_dwell(grade: str | None, rule: str, after) -> None:
    config = _graded(grade)
    engine = Engine(load_rules("rules/catalog", config), config)
    [violation] = _run(engine, _goods("41", 300))  # one case per shop front, not two
    assert violation.rule_id == rule
    assert violation.party == "m-0001"
    assert violation.opened_at == MONDAY_10 + after
    if grade == "C":
        assert violation.escalate == (1.0, 2.0)
        assert violation.dispose_within == timedelta(minutes=15)


def test_grade_c_short_stay_and_ungraded_short_stay() -> None:
    config = _graded("C")
    engine = Engine(load_rules("rules/catalog", config), config)
    assert _run(engine, _goods("42", 50)) == []  # under a minute: nothing
    config = _graded(None)
    engine = Engine(load_rules("rules/catalog", config), config)
    assert _run(engine, _goods("43", 120)) == []  # two minutes: not yet for a shop in good standing


def test_a_zone_given_to_a_grade_c_merchant_while_running() -> None:
    config = _graded("A")
    other = config.merchants[0].model_copy(update={"id": "m-0900", "grade": "C"})
    config = _graded("A", [other])
    engine = Engine(load_rules("rules/catalog", config), config)
    assert _run(engine, _goods("44", 120)) == []
    zone = next(z for d in config.devices for z in d.zones if z.id == "shopfront-wang")
    engine.learn_zones([Zone.model_validate(zone.model_dump() | {"merchant": "m-0900"})])
    [violation] = _run(engine, _goods("45", 90, start_s=200))
    assert violation.rule_id == "cross-door-trading-grade-c" and violation.party == "m-0900"


def test_when_is_checked() -> None:
    assert When(merchant_grade=["C"]).admits("C")
    assert not When(merchant_grade=["C"]).admits(None)
    assert When(merchant_grade=["none"]).admits(None)
    with pytest.raises(ValidationError, match="merchant grade"):
        When(merchant_grade=["D"])
    with pytest.raises(ValidationError):
        When(merchant_grade=[])
    clause = Clause.model_validate({"kind": "presence", "when": {"merchant_grade": "C"}})
    assert clause.when == When(merchant_grade=["C"])
    with pytest.raises(ValidationError, match="belong inside each clause"):
        Condition.model_validate({"all": [{"kind": "presence"}], "when": {"merchant_grade": ["C"]}})


def test_devices_yaml_grade_is_a_b_or_c() -> None:
    config = load_config("devices.yaml")
    doc = config.model_dump(mode="json")
    doc["merchants"][0]["grade"] = "D"
    with pytest.raises(ValidationError, match="grade"):
        SiteConfig.model_validate(doc)
    doc["merchants"][0]["grade"] = "B"
    assert SiteConfig.model_validate(doc).merchants[0].grade == "B"
