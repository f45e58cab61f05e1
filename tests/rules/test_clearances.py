"""The engine reports when an opened violation's situation ends (`Engine.clearances`)."""

from datetime import timedelta

from rulekit import at, obs, rule, ruleset, site

from rules.clearance import ENDED, SILENT, Clearance
from rules.engine import Engine

BIKE = rule(
    "bike",
    condition={
        "kind": "presence",
        "subject": ["bicycle"],
        "zone_kind": "no_parking",
        "dwell": "5m",
    },
    dispose_within="15m",
    cooldown="15m",
)
FIRE = rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})
SCHOOL = rule("school", condition={"kind": "geofence", "zone": "school", "device": "truck-1"})


def _engine(tmp_path, *rules):
    return Engine(ruleset(tmp_path, *rules), site(), tolerance_s=10.0)


def _bay(state, first, last):
    return obs(
        "occupancy", device="mag-1", subject="car", sid="bay-1", zone="bay-1", state=state,
        first=first, last=last,
    )  # fmt: skip


def _truck(state, first, last):
    return obs(
        "geofence", device="truck-1", subject="vehicle", sid="truck-1", zone="school",
        state=state, first=first, last=last,
    )  # fmt: skip


def test_a_bicycle_that_leaves_after_its_violation_clears_it_once(tmp_path):
    engine = _engine(tmp_path, BIKE)
    opened = []
    for t in range(0, 400, 2):
        opened += engine.process(obs(first=0, last=t))
        assert engine.clearances() == []
    assert len(opened) == 1
    opened += engine.process(obs(state="exit", first=0, last=402))
    cleared = engine.clearances()
    assert len(cleared) == 1
    c = cleared[0]
    assert isinstance(c, Clearance)
    v = opened[0]
    assert (c.rule_id, c.violation_id, c.situation) == ("bike", v.violation_id, v.situation)
    assert c.opened_at == v.opened_at == at(300)
    assert c.cleared_at == at(402)
    assert c.how == ENDED
    assert c.observation is not None and c.observation.state == "exit"
    assert c.shown_by()["state"] == "exit"
    assert c.devices == ("cam-1",) and c.zone_id == "np-1" and c.location is not None
    assert Clearance.from_dict(c.to_dict()) == c
    # drained: nothing more, not even once the subject is long forgotten
    engine.advance(at(5000))
    assert engine.clearances() == []


def test_a_bicycle_that_leaves_before_its_dwell_clears_nothing(tmp_path):
    engine = _engine(tmp_path, BIKE)
    for t in range(0, 200, 2):
        engine.process(obs(first=0, last=t))
    engine.process(obs(state="exit", first=0, last=202))
    engine.advance(at(3000))
    assert engine.clearances() == []


def test_a_silent_bicycle_clears_after_lost_after(tmp_path):
    engine = _engine(tmp_path, BIKE)
    opened = []
    for t in range(0, 320, 2):
        opened += engine.process(obs(first=0, last=t))
    assert len(opened) == 1
    engine.advance(at(330))
    assert engine.clearances() == []
    engine.advance(at(3000))
    (c,) = engine.clearances()
    assert c.how == SILENT and c.cleared_at == at(318)


def test_a_bay_occupied_then_vacant_clears_its_case(tmp_path):
    engine = _engine(tmp_path, FIRE)
    engine.process(_bay("occupied", 0, 0))
    opened = engine.advance(at(80))
    assert len(opened) == 1 and opened[0].opened_at == at(60)
    assert engine.clearances() == []
    engine.process(_bay("vacant", 240, 240))
    (c,) = engine.clearances()
    assert c.violation_id == opened[0].violation_id
    assert c.cleared_at == at(240)
    assert (c.cleared_at - c.opened_at) == timedelta(seconds=180)
    assert c.observation is not None and c.observation.state == "vacant"
    assert c.zone_id == "bay-1" and c.devices == ("mag-1",)
    # the next car is a new situation: its own violation, its own clearance
    engine.process(_bay("occupied", 300, 300))
    again = engine.advance(at(400))
    assert len(again) == 1 and again[0].violation_id != opened[0].violation_id
    engine.process(_bay("vacant", 420, 420))
    (c2,) = engine.clearances()
    assert c2.violation_id == again[0].violation_id and c2.cleared_at == at(420)


def test_a_violation_that_opens_and_ends_in_one_batch_clears_after_it(tmp_path):
    """A vacancy that overtakes the advance: the violation opens at the close, and clears."""
    engine = _engine(tmp_path, FIRE)
    engine.process(_bay("occupied", 0, 0))
    opened = engine.process(_bay("vacant", 200, 200))
    assert len(opened) == 1 and opened[0].opened_at == at(60)
    (c,) = engine.clearances()
    assert c.violation_id == opened[0].violation_id and c.cleared_at == at(200)


def test_a_truck_leaving_the_restricted_zone_clears_its_case(tmp_path):
    engine = _engine(tmp_path, SCHOOL)
    opened = engine.process(_truck("enter", 0, 0))
    opened += engine.process(_truck("inside", 0, 30))
    assert len(opened) == 1
    assert engine.clearances() == []
    engine.process(_truck("exit", 0, 95))
    (c,) = engine.clearances()
    assert c.violation_id == opened[0].violation_id
    assert c.cleared_at == at(95) and c.how == ENDED and c.zone_id == "school"


def test_a_suppressed_situation_clears_nothing(tmp_path):
    """Within the cooldown a second situation opens no violation, so its end clears nothing."""
    engine = _engine(tmp_path, BIKE)
    for t in range(0, 320, 2):
        engine.process(obs(first=0, last=t))
    engine.process(obs(state="exit", first=0, last=322))
    assert len(engine.clearances()) == 1
    for t in range(330, 700, 2):
        assert engine.process(obs(first=330, last=t)) == []  # same subject, in cooldown
    engine.process(obs(state="exit", first=330, last=702))
    assert engine.clearances() == []


def test_a_violation_found_again_after_a_restart_still_clears(tmp_path):
    """After a restart the engine remembers the case (`remember_opened`); the same situation
    replayed finds the same violation, which its end then clears."""
    fire = {**FIRE, "cooldown": "10m"}
    first = _engine(tmp_path, fire)
    first.process(_bay("occupied", 0, 0))
    (v,) = first.advance(at(80))
    second = _engine(tmp_path, fire)
    assert second.remember_opened("fire", v.situation, v.opened_at)
    second.process(_bay("occupied", 0, 0))
    assert second.advance(at(80)) == []  # the store holds its case already
    second.process(_bay("vacant", 240, 240))
    (c,) = second.clearances()
    assert c.violation_id == v.violation_id


def test_goods_taken_in_clear_their_cross_door_trading_case(tmp_path):
    """The catalog's cross-door-trading rule on the left-object detector's observations: crates
    put out at a shop front (`o1`, goods) open a case naming the merchant; taken in (the region
    matches the background again: the camera's `exit` for `o1`) they clear it."""
    import yaml

    from tests.conftest import REPO

    catalog = yaml.safe_load((REPO / "rules/catalog/cross-door-trading.yaml").read_text())
    engine = _engine(tmp_path, catalog)
    opened = []
    for t in range(0, 400, 2):
        goods = obs(
            subject="goods", sid="o1", zone="shop-1", zone_kind="shopfront", first=0, last=t
        )
        opened += engine.process(goods)
    assert [v.party for v in opened] == ["m-1"]
    taken_in = obs(
        subject="goods", sid="o1", zone="shop-1", zone_kind="shopfront", state="exit",
        first=0, last=404,
    )  # fmt: skip
    engine.process(taken_in)
    cleared = engine.clearances()
    assert [(c.violation_id, c.how) for c in cleared] == [(opened[0].violation_id, ENDED)]
    assert cleared[0].cleared_at == at(404)
