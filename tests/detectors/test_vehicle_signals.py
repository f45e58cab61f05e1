"""A terminal's alarm flags and named inputs → vehicle_signal observations: one situation per
signal from on to clear, re-reported at most once a second, `<input>_off_route` while off route."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from detectors.observation import ObservationKind
from detectors.vehicle_signals import SignalTracker

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_an_input_on_then_off_is_one_situation() -> None:
    tracker = SignalTracker("muck-08", Counter())
    out = []
    steps = [(0, False, False), (1, True, False), (1.5, True, True), (2.5, True, True),
             (3, True, True), (4, False, True), (5, False, False)]  # fmt: skip
    for s, raised, off in steps:
        attrs = {"alarm": [], "inputs": ["dump_raised"] if raised else [], "load": "full"}
        out += tracker.process(at(s), attrs, None, off_route=off)
    states = [(o.attributes["signal"], o.state, (o.last_seen - T0).total_seconds()) for o in out]
    assert states == [
        ("dump_raised", "dump_raised", 1.0),
        ("dump_raised_off_route", "dump_raised_off_route", 1.5),
        ("dump_raised", "dump_raised", 2.5),
        ("dump_raised_off_route", "dump_raised_off_route", 2.5),
        ("dump_raised", "clear", 4.0),
        ("dump_raised_off_route", "clear", 4.0),
    ]
    assert all(o.kind is ObservationKind.VEHICLE_SIGNAL for o in out)
    keys = {
        o.attributes["signal"]: {x.key for x in out if x.subject_id == o.subject_id} for o in out
    }
    assert all(len(k) == 1 for k in keys.values())  # one situation each, from on to clear
    assert out[-1].attributes["load"] == "full"


def test_alarms_and_no_attributes() -> None:
    tracker = SignalTracker("bus-1", Counter())
    assert tracker.process(at(0), None, None) == []
    [obs] = tracker.process(at(0), {"alarm": ["overspeed"]}, None, off_route=True)
    assert (obs.state, obs.subject_id) == ("overspeed", "bus-1/overspeed")  # alarms: no _off_route
    assert tracker.process(at(-5), {"alarm": ["overspeed"]}, None) == []  # late fix: nothing
