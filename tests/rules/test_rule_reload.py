import logging
import time

from rulekit import obs, rule, site, write_rules

from rules.engine import Engine
from rules.reload import RuleWatcher
from rules.schema import load_rules

FIRE = rule("fire", condition={"kind": "occupancy", "zone": "bay-1", "dwell": "60s"})


def test_valid_change_is_handed_over_and_broken_file_keeps_old_rules(tmp_path, caplog):
    folder = write_rules(tmp_path / "rules", FIRE)
    config = site()
    engine = Engine(load_rules(folder, config), config)
    errors = []
    watcher = RuleWatcher(folder, config, engine.replace, errors.append)
    assert watcher.check() is False  # nothing changed since the caller loaded

    # a valid edit: a second rule
    write_rules(folder, FIRE, rule("stall", condition={"kind": "presence", "subject": "stall"}))
    assert watcher.check() is True
    assert [r.id for r in engine.rules.rules] == ["fire", "stall"]

    # a broken edit: rejected with file:line, the running rules stay
    (folder / "rules.yaml").write_text(
        "rules:\n  - id: fire\n    name: f\n    category: a/b\n"
        "    condition: {kind: occupancy, zone: bay-9}\n"
    )
    with caplog.at_level(logging.ERROR, logger="streetwatch.rules"):
        assert watcher.check() is False
    assert [r.id for r in engine.rules.rules] == ["fire", "stall"]
    assert len(errors) == 1
    assert "rules.yaml:5: rules[0].condition.zone: unknown zone 'bay-9'" in errors[0].problems[0]
    assert "previous rules keep running" in caplog.text
    assert "unknown zone 'bay-9'" in caplog.text
    assert watcher.stats["reload_rejected"] == 1
    assert watcher.check() is False  # the same broken content is not re-reported

    # the engine still works on the old rules
    engine.process(obs("occupancy", device="mag-1", sid="bay-1", zone="bay-1", state="occupied"))
    assert [v.rule_id for v in engine.advance(obs(first=100, last=100).last_seen)] == ["fire"]

    # fixed again: accepted
    write_rules(folder, FIRE)
    assert watcher.check() is True
    assert [r.id for r in engine.rules.rules] == ["fire"]
    assert watcher.last_error is None


def test_background_thread_picks_up_a_change(tmp_path):
    folder = write_rules(tmp_path / "rules", FIRE)
    got = []
    watcher = RuleWatcher(folder, site(), got.append, interval_s=0.05).start()
    try:
        write_rules(folder, rule("two", condition={"kind": "presence"}), name="more.yaml")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert [len(r) for r in got] == [2]


def test_a_callback_that_raises_does_not_stop_the_watcher(tmp_path):
    folder = write_rules(tmp_path / "rules", FIRE)
    calls = []

    def boom(rules):
        calls.append(rules)
        raise RuntimeError("consumer failed")

    watcher = RuleWatcher(folder, site(), boom, interval_s=0.02).start()
    try:
        write_rules(folder, FIRE, rule("a", condition={"kind": "presence"}))
        deadline = time.monotonic() + 5
        while watcher.stats["reload_failed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        write_rules(folder, rule("b", condition={"kind": "presence"}))
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert len(calls) == 2
