"""Property: what opens, and when, does not depend on arrival order within the tolerance.

Exactly for single-subject rules (a subject's dwell starts at its own first_seen). For `all`
the moment is the first one the engine *knows* the condition holds: a delayed report can show it
held a little earlier, but a case once opened is not moved, so there the opening time may differ
by up to the delay. (min_count with per-zone dedup is not covered: which subjects join an open
zone case can depend on arrival order.)"""

import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rulekit import at, obs, rule, ruleset, site

from rules.engine import Engine

RULES = [
    rule(
        "bike",
        condition={"kind": "presence", "subject": "bicycle", "zone": "np-1", "dwell": "40s"},
        cooldown="2m",
    ),
    rule("bay", condition={"kind": "occupancy", "zone": ["bay-1", "bay-2"], "dwell": "30s"}),
    rule(
        "both",
        condition={
            "all": [
                {"kind": "occupancy", "zone": "bay-1", "dwell": "20s"},
                {"kind": "presence", "subject": "car", "zone": "cam-bay-1"},
            ],
            "within": "30s",
            "places": [["bay-1", "cam-bay-1"]],
        },
    ),
]


@st.composite
def scripts(draw):
    """Reports of a few subjects over ~10 minutes, in event-time order."""
    reports = []
    for sid in ("a", "b", "c"):
        t = draw(st.integers(0, 200))
        for _ in range(draw(st.integers(0, 2))):
            stay = draw(st.integers(5, 150))
            reports += [obs(sid=sid, first=t, last=u) for u in range(t, t + stay + 1, 3)]
            t += stay + draw(st.integers(40, 120))
    car_t = draw(st.integers(0, 300))
    reports += [
        obs(subject="car", sid="car", zone="cam-bay-1", first=car_t, last=u)
        for u in range(car_t, car_t + draw(st.integers(1, 60)), 2)
    ]
    for bay, device in (("bay-1", "mag-1"), ("bay-2", "mag-2")):
        t = draw(st.integers(0, 100))
        for _ in range(draw(st.integers(0, 3))):
            stay = draw(st.integers(5, 90))
            reports.append(
                obs(
                    "occupancy", device=device, sid=bay, zone=bay, state="occupied", first=t, last=t
                )
            )
            reports.append(
                obs(
                    "occupancy",
                    device=device,
                    sid=bay,
                    zone=bay,
                    state="vacant",
                    first=t + stay,
                    last=t + stay,
                )
            )
            t += stay + draw(st.integers(5, 100))
    reports.sort(key=lambda o: o.last_seen)
    return reports


def _occupancy(bay, device, state, t):
    return obs("occupancy", device=device, sid=bay, zone=bay, state=state, first=t, last=t)


OVERTAKEN_CLOSE = sorted(
    [obs(subject="car", sid="car", zone="cam-bay-1", first=6, last=u) for u in range(6, 51, 2)]
    + [
        _occupancy("bay-1", "mag-1", "occupied", 25),
        _occupancy("bay-1", "mag-1", "vacant", 76),
        _occupancy("bay-1", "mag-1", "occupied", 83),
        _occupancy("bay-1", "mag-1", "vacant", 98),
    ],
    key=lambda o: o.last_seen,
)
"""A car beside bay-1 while it is occupied 25-76 s: `both` holds from 45 s, known only when the
bay's vacant report closes the situation. Delivered shuffled, the next occupied report (83 s)
overtakes that vacant one (76 s); the engine used to drop the overtaken situation from the
group `all` looks in, and `both` never opened (found by CI's draw, issue 13)."""


OVERTAKEN_CLOSE_LATER = sorted(
    [obs(sid="a", first=98, last=u) for u in range(98, 246, 3)]
    + [obs(sid="c", first=89, last=u) for u in range(89, 126, 3)]
    + [obs(subject="car", sid="car", zone="cam-bay-1", first=79, last=u) for u in range(79, 130, 2)]
    + [
        _occupancy("bay-1", "mag-1", state, t)
        for start, end in ((22, 85), (90, 151), (158, 218))
        for state, t in (("occupied", start), ("vacant", end))
    ],
    key=lambda o: o.last_seen,
)
"""The same overtaken close with bicycles a and c re-reported every 3 s beside it: `both` held
from 79 s (bay-1 occupied 22-85 s, the car from 79 s); shuffled, the bay's next occupied report
(90 s) overtook the vacant one (85 s) and `both` opened 31 s late, on the next situation (CI's
other counterexample: 02:02:08 instead of 02:01:38)."""


def _run(engine, reports, tick):
    out = []
    clock = None
    for o in reports:
        out += engine.process(o)
        if clock is None or o.last_seen > clock:
            clock = o.last_seen
        if tick:
            out += engine.advance(clock)
    out += engine.advance(at(5000))
    return sorted((v.rule_id, v.situation, v.opened_at) for v in out)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(reports=scripts(), seed=st.integers(0, 2**32 - 1), tick=st.booleans())
@example(reports=OVERTAKEN_CLOSE, seed=53, tick=False)
@example(reports=OVERTAKEN_CLOSE, seed=53, tick=True)
@example(reports=OVERTAKEN_CLOSE_LATER, seed=1336928585, tick=False)
def test_arrival_order_within_tolerance_does_not_change_violations(
    tmp_path_factory, reports, seed, tick
):
    rules = ruleset(tmp_path_factory.mktemp("r"), *RULES)
    in_order = _run(Engine(rules, site(), tolerance_s=10), reports, tick)
    rng = random.Random(seed)
    # each report delayed by up to 8 s of event time: arrival order shuffles within that
    delayed = sorted(reports, key=lambda o: o.last_seen.timestamp() + rng.uniform(0, 8))
    engine = Engine(rules, site(), tolerance_s=10)
    shuffled = _run(engine, delayed, tick)
    assert engine.stats["late_dropped"] == 0
    assert [v[:2] for v in shuffled] == [v[:2] for v in in_order]
    for (rule_id, _, opened), (_, _, expected) in zip(shuffled, in_order, strict=True):
        if rule_id in ("bike", "bay"):
            assert opened == expected
        else:
            assert abs((opened - expected).total_seconds()) <= 8
