"""`Engine.live_situations()`: what the console's rules page shows, copied out of a live engine
(who is in which zone, dwell so far against the clause's dwell), safe from another thread."""

import threading

from rulekit import T0, at, obs, rule, ruleset, site

from rules.engine import Engine

BIKE = rule(
    "bike",
    condition={"kind": "presence", "subject": "bicycle", "zone_kind": "no_parking", "dwell": "60s"},
)
FIRE = rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})


def _bay(state: str, first: float, last: float):
    return obs(
        "occupancy", device="mag-1", subject="car", sid="bay-1", zone="bay-1",
        state=state, first=first, last=last,
    )  # fmt: skip


def test_presence_situations_carry_dwell_so_far_and_the_rules_dwell(tmp_path):
    engine = Engine(ruleset(tmp_path, BIKE, FIRE), site(), external_clock=True)
    engine.process(obs(sid="7", first=0, last=30))
    engine.process(obs(sid="8", first=10, last=25))
    live = sorted(engine.live_situations(), key=lambda s: s.subject_id)
    assert [(s.rule_id, s.subject_id, s.zone_id, s.device_id) for s in live] == [
        ("bike", "7", "np-1", "cam-1"),
        ("bike", "8", "np-1", "cam-1"),
    ]
    assert [s.dwell_s for s in live] == [30.0, 15.0]
    assert all(s.needed_s == 60.0 and not s.fired and s.subject == "bicycle" for s in live)
    assert live[0].first_seen == T0.timestamp() and live[0].last_seen == at(30).timestamp()


def test_a_state_driven_situation_grows_with_event_time_and_shows_when_it_fired(tmp_path):
    engine = Engine(ruleset(tmp_path, FIRE), site(), external_clock=True)
    engine.process(_bay("occupied", first=0, last=0))
    engine.advance(at(40))
    (bay,) = engine.live_situations()
    assert bay.dwell_s == 40.0 and not bay.fired
    assert engine.advance(at(75))  # watermark 65 s: past the 60 s dwell
    (bay,) = engine.live_situations()
    assert bay.dwell_s == 75.0 and bay.fired
    engine.process(_bay("vacant", first=80, last=80))
    assert engine.live_situations() == []


def test_it_is_a_copy_the_analysis_thread_can_change_meanwhile(tmp_path):
    engine = Engine(ruleset(tmp_path, BIKE), site(), external_clock=True)
    stop = threading.Event()
    errors: list[BaseException] = []

    def analyse() -> None:
        t = 0
        while not stop.is_set():
            t += 1
            for sid in range(50):
                engine.process(obs(sid=str(sid + t % 7), first=t, last=t))
            engine.advance(at(t + 1000))  # forgets the silent ones: tracks come and go

    thread = threading.Thread(target=analyse)
    thread.start()
    try:
        for _ in range(2000):
            for situation in engine.live_situations():
                assert situation.rule_id == "bike" and situation.dwell_s >= 0
    except BaseException as exc:  # pragma: no cover - the failure being tested for
        errors.append(exc)
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
