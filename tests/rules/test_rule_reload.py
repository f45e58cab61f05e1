import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from rulekit import obs, rule, site, write_rules

from rules.engine import Engine
from rules.reload import RuleWatcher
from rules.schema import load_rules
from tests.consolekit import serve_console

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


@pytest.mark.timeout(30)
def test_a_fifo_in_the_folder_is_rejected_not_opened_and_reload_goes_on(tmp_path, caplog):
    # a FIFO named *.yaml used to block the reload thread in open() for good, silently
    folder = write_rules(tmp_path / "rules", FIRE)
    got, errors = [], []
    watcher = RuleWatcher(folder, site(), got.append, errors.append, interval_s=0.05).start()
    try:
        os.mkfifo(folder / "pipe.yaml")
        wait_for(lambda: errors, "the FIFO to be rejected")
        assert errors[0].problems == [
            f"{folder / 'pipe.yaml'}: cannot read: it is a FIFO (named pipe), not a regular file"
        ]
        (folder / "pipe.yaml").unlink()
        write_rules(folder, rule("two", condition={"kind": "presence"}), name="more.yaml")
        wait_for(lambda: got and len(got[-1]) == 2, "the next valid edit to be picked up")
    finally:
        watcher.stop()
    assert sorted(r.id for r in got[-1].rules) == ["fire", "two"]
    assert watcher.stats["reload_rejected"] == 1


def test_a_link_to_dev_zero_is_rejected_at_once(tmp_path):
    # it used to be read whole (memory swinging to 6 GB), every 2 s
    folder = write_rules(tmp_path / "rules", FIRE)
    errors = []
    watcher = RuleWatcher(folder, site(), lambda rules: None, errors.append)
    (folder / "zero.yaml").symlink_to("/dev/zero")
    started = time.monotonic()
    assert watcher.check() is False
    assert watcher.check() is False  # the same bad folder is reported once
    assert time.monotonic() - started < 5
    [error] = errors
    assert error.problems == [
        f"{folder / 'zero.yaml'}: cannot read: it is a character device, not a regular file"
    ]


@pytest.mark.timeout(60)
def test_a_stuck_reload_shows_in_healthz_and_the_log(tmp_path, caplog):
    folder = write_rules(tmp_path / "rules", FIRE)
    release = threading.Event()
    entered = threading.Event()

    def blocks(rules):  # a poll that does not finish (a hung mount would do the same)
        entered.set()
        release.wait(30)

    watcher = RuleWatcher(folder, site(), blocks, interval_s=0.05, stuck_after_s=2.0)

    def health():  # as Pipeline.health reports its watcher
        why = watcher.stuck()
        return why is None, {"broker": "connected", **({"rules_reload": why} if why else {})}

    ops = serve_console(site(), tmp_path / "console", health=health)
    assert get_health(ops) == (200, {"ok": True, "broker": "connected"})
    try:
        with caplog.at_level(logging.WARNING, logger="streetwatch.rules"):
            watcher.start()
            write_rules(folder, FIRE, rule("two", condition={"kind": "presence"}))
            assert entered.wait(10)
            wait_for(lambda: get_health(ops)[0] == 503, "/healthz to report the stuck reload")
            _, body = get_health(ops)
            assert body["ok"] is False and body["broker"] == "connected"
            assert body["rules_reload"].startswith(f"rule reload of {folder} stuck: no poll ")
            assert "rule edits are not picked up" in body["rules_reload"]
            wait_for(lambda: watcher.stats["reload_stuck"] >= 1, "the watchdog to log it")
            assert f"rule reload of {folder} stuck" in caplog.text
            release.set()
            wait_for(lambda: get_health(ops)[0] == 200, "/healthz healthy once the poll ends")
            wait_for(lambda: "is polling again" in caplog.text, "the recovery to be logged")
        assert watcher.last_poll_finished is not None
    finally:
        release.set()
        watcher.stop()
        ops.stop()
    assert watcher.stuck() is None


def wait_for(predicate, what, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def get_health(ops):
    host, port = ops.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as page:
            return page.status, json.loads(page.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
