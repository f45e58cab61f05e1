"""Live runs drive the engine's event time from outside (the pipeline's watermark over devices):
a camera on the box's clock must not make a lagging sensor's reports late, nor fire a bay's
dwell before the sensor itself has had its say."""

from rulekit import at, obs, rule, ruleset, site

from rules.engine import Engine

FIRE = rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})
LINGER = rule(
    "linger", condition={"kind": "presence", "subject": "person", "zone": "shop-1", "dwell": "8s"}
)


def _bay(state: str, first: float, last: float):
    return obs(
        "occupancy", device="mag-1", subject="car", sid="bay-1", zone="bay-1",
        state=state, first=first, last=last,
    )  # fmt: skip


def _person(first: float, last: float):
    return obs(subject="person", sid="t3", zone="shop-1", first=first, last=last)


def test_a_device_ahead_does_not_make_a_lagging_device_late(tmp_path):
    engine = Engine(ruleset(tmp_path, FIRE, LINGER), site(), external_clock=True)
    assert engine.process(_person(first=600, last=605)) == []
    assert engine.process(_bay("occupied", first=0, last=0)) == []
    assert engine.stats["late_dropped"] == 0
    # the bay empties at 30 s: nothing may open even though the camera is ten minutes ahead
    assert engine.process(_bay("vacant", first=30, last=30)) == []
    assert engine.advance(at(700)) == []
    assert engine.stats["violations"] == 0


def test_time_only_moves_with_advance_and_each_device_has_its_own_lateness(tmp_path):
    engine = Engine(ruleset(tmp_path, FIRE, LINGER), site(), external_clock=True)
    engine.process(_bay("occupied", first=0, last=0))
    engine.process(_person(first=600, last=605))
    assert engine.advance(at(65)) == []
    opened = engine.advance(at(75))
    assert [v.rule_id for v in opened] == ["fire"]
    # the camera's own report proves its dwell, whatever the external clock says
    assert [v.rule_id for v in engine.process(_person(first=600, last=609))] == ["linger"]
    # behind the camera's newest report by more than the tolerance: late for that device only
    assert engine.process(_person(first=500, last=580)) == []
    assert engine.stats["late_dropped"] == 1
    assert "cam-1" in engine.dropped[-1].reason


def test_without_an_external_clock_the_newest_report_anywhere_sets_the_time(tmp_path):
    engine = Engine(ruleset(tmp_path, FIRE, LINGER), site())
    engine.process(_person(first=600, last=605))
    assert engine.process(_bay("occupied", first=0, last=0)) == []
    assert engine.stats["late_dropped"] == 1
