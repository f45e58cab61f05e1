from datetime import timedelta

from rulekit import at, obs, rule, ruleset, site

from rules.engine import Engine


def _engine(tmp_path, *rules, tolerance_s=10.0):
    return Engine(ruleset(tmp_path, *rules), site(), tolerance_s=tolerance_s)


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


def test_presence_fires_once_when_dwell_reached_and_carries_its_observations(tmp_path):
    engine = _engine(tmp_path, BIKE)
    out = []
    for t in range(0, 400, 2):
        out += engine.process(obs(first=0, last=t))
    assert len(out) == 1
    v = out[0]
    assert v.opened_at == at(300)
    assert v.rule_id == "bike" and v.zone_id == "np-1" and v.zone_kind == "no_parking"
    assert v.deadline == at(300) + timedelta(minutes=15)
    assert v.observations and all(o.subject_id == "7" for o in v.observations)
    assert v.observations[0].last_seen == at(0)
    assert v.devices == ("cam-1",)
    assert engine.stats["violations"] == 1


def test_near_miss_leaving_before_dwell_opens_nothing(tmp_path):
    engine = _engine(tmp_path, BIKE)
    out = []
    for t in range(0, 290, 2):
        out += engine.process(obs(first=0, last=t))
    out += engine.advance(at(2000))
    assert out == []
    assert engine.live_subjects() == 0  # forgotten after lost_after


def test_other_classes_and_zones_do_not_match(tmp_path):
    engine = _engine(tmp_path, BIKE)
    out = engine.process(obs(subject="car", first=0, last=400))
    out += engine.process(obs(zone="walk-1", first=0, last=400))
    assert out == []
    assert engine.stats["unmatched"] == 2


def test_occupancy_dwell_fires_from_advance_without_new_observation(tmp_path):
    engine = _engine(
        tmp_path, rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})
    )
    # geomagnetic occupancy carries the bay as zone; the engine also maps a bare device to its bay
    assert (
        engine.process(
            obs(
                "occupancy",
                device="mag-1",
                subject="car",
                sid="bay-1",
                zone=None,
                state="occupied",
                first=0,
                last=0,
            )
        )
        == []
    )
    assert engine.advance(at(65)) == []  # watermark = 55 s: not yet
    out = engine.advance(at(70.5))
    assert len(out) == 1
    assert out[0].opened_at == at(60)
    assert out[0].zone_id == "bay-1"
    assert out[0].location is not None  # the sensor's location from devices.yaml
    assert engine.advance(at(500)) == []


def test_vacant_before_dwell_cancels(tmp_path):
    engine = _engine(
        tmp_path, rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})
    )
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=0,
        )
    )
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="vacant",
            first=40,
            last=40,
        )
    )
    assert engine.advance(at(500)) == []


def test_out_of_order_within_tolerance_is_used(tmp_path):
    engine = _engine(
        tmp_path,
        rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"}),
        tolerance_s=20,
    )
    engine.process(obs("presence", subject="person", zone="walk-1", first=0, last=100))
    # a vacant at 95 s arrives after the clock reached 100 s: within tolerance; it closes a
    # situation whose occupied report arrives even later (still within tolerance)
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=10,
            last=85,
        )
    )
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="vacant",
            first=90,
            last=95,
        )
    )
    assert engine.stats["late_dropped"] == 0
    assert engine.advance(at(1000)) == []


def test_out_of_order_occupied_opens_at_event_time(tmp_path):
    engine = _engine(
        tmp_path,
        rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"}),
        tolerance_s=20,
    )
    engine.process(obs("presence", subject="person", zone="walk-1", first=0, last=100))
    out = engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=85,
        )
    )
    out += engine.advance(at(200))
    assert [v.opened_at for v in out] == [at(60)]


def test_late_beyond_tolerance_is_counted_and_dropped_with_reason(tmp_path):
    engine = _engine(tmp_path, BIKE, tolerance_s=10)
    engine.process(obs(subject="person", zone="walk-1", first=0, last=1000))
    assert engine.process(obs(first=0, last=400)) == []
    assert engine.stats["late_dropped"] == 1
    dropped = engine.dropped[-1]
    assert dropped.observation.last_seen == at(400)
    assert "late by 600.0 s" in dropped.reason and "tolerance 10 s" in dropped.reason


def test_cooldown_one_violation_per_situation(tmp_path):
    engine = _engine(
        tmp_path,
        rule(
            "fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "30s"}, cooldown="10m"
        ),
    )
    out = []

    def occ(state, t):
        return engine.process(
            obs(
                "occupancy", device="mag-1", sid="bay-1", zone="bay-1", state=state, first=t, last=t
            )
        )

    out += occ("occupied", 0)
    out += engine.advance(at(100))
    # the car edges out and back: vacant for 20 s, then occupied again
    out += occ("vacant", 200)
    out += occ("occupied", 220)
    out += engine.advance(at(400))
    assert len(out) == 1
    assert engine.stats["suppressed_cooldown"] == 1
    # much later, a new car: a new case
    out += occ("vacant", 900)
    out += occ("occupied", 1000)
    out += engine.advance(at(1100))
    assert [v.opened_at for v in out] == [at(30), at(1030)]
    assert len({v.violation_id for v in out}) == 2


def test_dedup_by_zone_one_case_while_zone_stays_in_violation(tmp_path):
    engine = _engine(
        tmp_path,
        rule(
            "vend",
            condition={"kind": "presence", "subject": "goods", "zone": "walk-1", "dwell": "1m"},
            dedup="zone",
        ),
    )
    out = []
    for t in range(0, 300, 5):
        out += engine.process(obs(subject="goods", sid="a", zone="walk-1", first=0, last=t))
        if t >= 30:
            out += engine.process(obs(subject="goods", sid="b", zone="walk-1", first=30, last=t))
    assert len(out) == 1
    assert out[0].situation == "zone:walk-1"
    assert engine.stats["suppressed_same_situation"] == 1


def test_min_count_needs_that_many_at_once(tmp_path):
    engine = _engine(
        tmp_path,
        rule(
            "crowd",
            condition={
                "kind": "presence",
                "subject": "bicycle",
                "zone": "np-1",
                "min_count": 3,
                "dwell": "30s",
            },
        ),
    )
    out = []
    for t in range(0, 100, 5):
        out += engine.process(obs(sid="a", first=0, last=t))
        out += engine.process(obs(sid="b", first=0, last=t))
    assert out == []
    for t in range(100, 200, 5):
        out += engine.process(obs(sid="a", first=0, last=t))
        out += engine.process(obs(sid="b", first=0, last=t))
        out += engine.process(obs(sid="c", first=100, last=t))
    assert len(out) == 1
    assert out[0].opened_at == at(130)
    assert out[0].thresholds["count"] == 3
    assert {o.subject_id for o in out[0].observations} == {"a", "b", "c"}


def test_schedule_in_site_timezone_and_over_midnight(tmp_path):
    # T0 is 10:00 Asia/Shanghai; window 22:00-06:00 local
    night = rule(
        "night",
        condition={"kind": "presence", "subject": "stall", "zone": "walk-1"},
        schedule={"windows": ["22:00-06:00"]},
    )
    engine = _engine(tmp_path, night)
    assert engine.process(obs(subject="stall", zone="walk-1", first=0, last=0)) == []
    # 23:30 local = 13.5 h later
    t = 13.5 * 3600
    out = engine.process(obs(subject="stall", sid="n", zone="walk-1", first=t, last=t))
    assert len(out) == 1
    # 05:59 local next day (still in window, day after the start)
    t2 = 19.98 * 3600
    assert len(engine.process(obs(subject="stall", sid="m", zone="walk-1", first=t2, last=t2))) == 1
    # 06:00 local: outside
    t3 = 20 * 3600
    assert engine.process(obs(subject="stall", sid="k", zone="walk-1", first=t3, last=t3)) == []


def test_dwell_crossing_into_schedule_opens_at_window_start(tmp_path):
    day = rule(
        "day",
        condition={"kind": "occupancy", "zone": "bay-1", "dwell": "5m"},
        schedule={"windows": ["10:30-11:00"]},
    )
    engine = _engine(tmp_path, day)
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=0,
        )
    )
    assert engine.advance(at(1700)) == []
    out = engine.advance(at(1815))
    assert [v.opened_at for v in out] == [at(1800)]


def test_all_bay_and_camera_within_window_using_places(tmp_path):
    confirmed = rule(
        "fire-cam",
        condition={
            "all": [
                {"kind": "occupancy", "zone": ["bay-1", "bay-2"], "dwell": "30s"},
                {"kind": "presence", "subject": "car", "zone": ["cam-bay-1", "cam-bay-2"]},
            ],
            "within": "30s",
            "places": [["bay-1", "cam-bay-1"], ["bay-2", "cam-bay-2"]],
        },
    )
    engine = _engine(tmp_path, confirmed)
    out = engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=0,
        )
    )
    # a car seen over the OTHER bay does not confirm bay-1
    out += engine.process(obs(subject="car", sid="c9", zone="cam-bay-2", first=20, last=50))
    out += engine.advance(at(100))
    assert out == []
    out += engine.process(obs(subject="car", sid="c1", zone="cam-bay-1", first=110, last=112))
    # the bay's state is only known up to the watermark (a late `vacant` could still come)
    assert out == []
    out += engine.advance(at(121))
    assert len(out) == 1
    v = out[0]
    assert v.opened_at == at(110)
    assert set(v.devices) == {"mag-1", "cam-1"}
    assert {o.kind.value for o in v.observations} == {"occupancy", "presence"}


def test_all_confirmation_too_far_apart_does_not_fire(tmp_path):
    confirmed = rule(
        "fire-cam",
        condition={
            "all": [
                {"kind": "occupancy", "zone": "bay-1", "dwell": "30s"},
                {"kind": "presence", "subject": "car", "zone": "cam-bay-1"},
            ],
            "within": "30s",
            "places": [["bay-1", "cam-bay-1"]],
        },
    )
    engine = _engine(tmp_path, confirmed)
    # camera saw a car at 0-5 s, the bay went occupied at 100 s
    out = engine.process(obs(subject="car", sid="c1", zone="cam-bay-1", first=0, last=5))
    out += engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=100,
            last=100,
        )
    )
    out += engine.advance(at(300))
    assert out == []


def test_any_of_two_clauses(tmp_path):
    either = rule(
        "either",
        condition={
            "any": [
                {"kind": "presence", "subject": "stall", "zone": "walk-1", "dwell": "1m"},
                {"kind": "geofence", "zone": "school", "device": "truck-1"},
            ]
        },
    )
    engine = _engine(tmp_path, either)
    out = engine.process(
        obs(
            "geofence",
            device="truck-1",
            subject="vehicle",
            sid="truck-1",
            zone="school",
            state="enter",
            first=0,
            last=0,
        )
    )
    out += engine.process(obs(subject="stall", zone="walk-1", first=0, last=61))
    assert [v.zone_id for v in out] == ["school", "walk-1"]


def test_party_is_the_merchant_of_the_shopfront(tmp_path):
    trade = rule(
        "trade",
        condition={"kind": "presence", "subject": "goods", "zone_kind": "shopfront", "dwell": "1m"},
        party="merchant",
    )
    engine = _engine(tmp_path, trade)
    out = engine.process(obs(subject="goods", zone="shop-1", first=0, last=70))
    assert [v.party for v in out] == ["m-1"]


def test_replace_keeps_state_of_unchanged_rules(tmp_path):
    fire = rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})
    engine = _engine(tmp_path, fire)
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=0,
        )
    )
    engine.replace(ruleset(tmp_path / "v2", fire, BIKE))
    out = engine.advance(at(100))
    assert [v.rule_id for v in out] == ["fire"]


def test_editing_a_rule_keeps_its_cooldowns(tmp_path):
    fire = rule(
        "fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "30s"}, cooldown="1h"
    )
    engine = _engine(tmp_path, fire)
    engine.process(obs("occupancy", device="mag-1", sid="bay-1", zone="bay-1", state="occupied"))
    assert len(engine.advance(at(60))) == 1
    edited = {**fire, "severity": "major"}
    engine.replace(ruleset(tmp_path / "v2", edited))
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=100,
        )
    )
    assert engine.advance(at(300)) == []
    assert engine.stats["suppressed_cooldown"] == 1


def test_state_of_subjects_that_left_is_forgotten(tmp_path):
    engine = _engine(tmp_path, {**BIKE, "condition": {**BIKE["condition"], "dwell": "10s"}})
    opened = 0
    for k in range(300):
        start = k * 10
        for t in range(start, start + 15, 3):
            opened += len(engine.process(obs(sid=f"s{k}", first=start, last=t)))
        opened += len(engine.advance(at(start + 10)))
    assert opened == 300
    engine.advance(at(300 * 10 + 3600))
    assert engine.live_subjects() == 0
    assert sum(len(r.dedup) for r in engine._rules) < 10


def test_a_close_that_overtakes_the_report_it_closes(tmp_path):
    engine = _engine(
        tmp_path,
        rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"}),
        tolerance_s=30,
    )
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="vacant",
            first=50,
            last=50,
        )
    )
    # the occupied report of 0-45 s arrives after the vacant that ended it
    engine.process(
        obs(
            "occupancy",
            device="mag-1",
            sid="bay-1",
            zone="bay-1",
            state="occupied",
            first=0,
            last=45,
        )
    )
    assert engine.advance(at(600)) == []
    assert engine.stats["stale_after_close"] == 1


def test_exit_report_closes_where_it_was_made_and_counts_the_dwell_before(tmp_path):
    engine = _engine(
        tmp_path,
        rule("linger", condition={"kind": "geofence", "zone": "school", "dwell": "60s"}),
    )
    assert (
        engine.process(
            obs(
                "geofence",
                device="truck-1",
                subject="vehicle",
                sid="truck-1",
                zone="school",
                state="enter",
                first=0,
                last=0,
            )
        )
        == []
    )
    # no advance in between: the exit report alone shows the truck stayed 90 s
    out = engine.process(
        obs(
            "geofence",
            device="truck-1",
            subject="vehicle",
            sid="truck-1",
            zone="school",
            state="exit",
            first=0,
            last=90,
        )
    )
    assert [v.opened_at for v in out] == [at(60)]
    assert out[0].window_end == at(90)


def test_new_situation_of_the_same_subject_ends_the_previous_one(tmp_path):
    engine = _engine(
        tmp_path,
        rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "30s"}),
        tolerance_s=10,
    )

    def occ(state, first, last):
        return engine.process(
            obs(
                "occupancy",
                device="mag-1",
                sid="bay-1",
                zone="bay-1",
                state=state,
                first=first,
                last=last,
            )
        )

    out = occ("occupied", 0, 0)
    out += occ("occupied", 25, 25)  # a new car: the vacant between them is still on its way
    out += occ("vacant", 20, 20)  # ... and arrives: the first car stayed 20 s
    out += engine.advance(at(200))
    assert [v.opened_at for v in out] == [at(55)]


def test_a_restarted_engine_keeps_the_cooldowns_of_the_cases_it_opened(tmp_path):
    fire = rule(
        "fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "30s"}, cooldown="1h"
    )

    def park(engine, first, state="occupied"):
        engine.process(
            obs(
                "occupancy",
                device="mag-1",
                sid="bay-1",
                zone="bay-1",
                state=state,
                first=first,
                last=first,
            )
        )
        return engine.advance(at(first + 60))

    before = _engine(tmp_path, fire)
    (opened,) = park(before, 0)
    # the box restarts; the next car parks 20 minutes later, inside the hour's cooldown
    forgetful = _engine(tmp_path, fire)
    assert len(park(forgetful, 1200)) == 1
    restarted = _engine(tmp_path, fire)
    assert restarted.remember_opened(opened.rule_id, opened.situation, opened.opened_at)
    assert not restarted.remember_opened("no-such-rule", opened.situation, opened.opened_at)
    assert park(restarted, 1200) == []
    assert restarted.stats["suppressed_cooldown"] == 1
    park(restarted, 3000, "vacant")
    assert [v.rule_id for v in park(restarted, 3700)] == ["fire"]  # the hour is over
