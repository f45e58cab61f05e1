"""Scale-out: two `streetwatch run` workers, each owning half of the site's devices, on one
Mosquitto. Every reading is journaled by exactly one of them, each device's whole stream
reaches one worker's detectors, and together they open the same cases as a single worker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from ingest.config import load_config
from streetwatch.localbroker import Mosquitto
from tests.conftest import market_site_text
from tests.runkit import (
    FAULTS,
    RunProcess,
    all_analysed,
    cases_of,
    journaled,
    publish,
    scenario,
    wait_until,
)


def worker_site(tmp_path: Path, name: str, partition: dict | None) -> Path:
    doc = yaml.safe_load(market_site_text())
    doc["storage"] = {"root": str(tmp_path / name)}
    doc["broker"]["client_id"] = f"sw-{name}"
    if partition is not None:
        doc["broker"]["partition"] = partition
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


def journal(var: Path) -> tuple[dict[str, set[str]], int]:
    db = sqlite3.connect(var / "journal.sqlite")
    keys: dict[str, set[str]] = {}
    for device, key in db.execute("SELECT device_id, key FROM readings"):
        keys.setdefault(device, set()).add(key)
    (letters,) = db.execute("SELECT count(*) FROM dead_letters").fetchone()
    db.close()
    return keys, letters


def opened(var: Path) -> set[tuple[str, str]]:
    db = sqlite3.connect(var / "cases.sqlite")
    rows = db.execute("SELECT rule_id, violation_id FROM cases").fetchall()
    db.close()
    return set(rows)


def run_workers(tmp_path: Path, broker: Mosquitto, configs: list[Path], messages: list) -> None:
    runs = [RunProcess(c, broker, tmp_path / f"{c.stem}.log") for c in configs]
    report = publish(messages, broker)
    assert report.acked == len(messages)
    expected = len(messages) - FAULTS
    wait_until(
        lambda: sum(journaled(tmp_path / c.stem) for c in configs) >= expected,
        60,
        "every reading journaled by some worker",
    )
    for config in configs:
        var = tmp_path / config.stem
        wait_until(lambda var=var: all_analysed(var), 60, f"{config.stem} to analyse")
        wait_until(lambda var=var: all(s != "opened" for _, _, s in cases_of(var)), 60, "packages")
    for run in runs:
        run.terminate()


def test_two_partitioned_workers_split_devices_and_match_one_worker(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    single = worker_site(tmp_path, "single", None)
    messages = scenario(single)
    run_workers(tmp_path, mosquitto, [single], messages)
    halves = [worker_site(tmp_path, f"half{i}", {"index": i, "count": 2}) for i in range(2)]
    run_workers(tmp_path, mosquitto, halves, messages)

    config = load_config(halves[0])
    owned = [{d.id for d in config.devices if config.broker.partition.owns(d.id)}]
    owned.append({d.id for d in config.devices} - owned[0])
    assert all(owned), "each worker owns some devices"
    per_worker = [journal(tmp_path / f"half{i}") for i in range(2)]
    for (keys, _), mine in zip(per_worker, owned, strict=True):
        assert set(keys) <= mine
    all_keys = [k for keys, _ in per_worker for device in keys.values() for k in device]
    assert len(all_keys) == len(set(all_keys)) == len(messages) - FAULTS
    reference, _ = journal(tmp_path / "single")
    for keys, _ in per_worker:
        for device, device_keys in keys.items():
            assert device_keys == reference[device]
    # the unknown-device fault reaches no partition; the other bad messages reach one each
    assert sum(letters for _, letters in per_worker) == FAULTS - 1

    together = opened(tmp_path / "half0") | opened(tmp_path / "half1")
    assert together == opened(tmp_path / "single")
    assert {"fire-lane-occupied", "muck-truck-off-route"} <= {rule for rule, _ in together}


def test_two_workers_in_one_shared_group_journal_every_reading_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A shared subscription splits messages, not devices: right for workers that journal and
    ship, so these run without rules (detection would see only part of each device)."""
    no_rules = tmp_path / "no-rules"
    no_rules.mkdir()
    configs = []
    for i in range(2):
        path = worker_site(tmp_path, f"shared{i}", None)
        doc = yaml.safe_load(path.read_text())
        doc["broker"]["shared_group"] = "journalers"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        configs.append(path)
    messages = scenario(configs[0])
    runs = [
        RunProcess(c, mosquitto, tmp_path / f"{c.stem}.log", "-r", str(no_rules)) for c in configs
    ]
    report = publish(messages, mosquitto)
    assert report.acked == len(messages)
    wait_until(
        lambda: sum(len(k) for v in (journal(tmp_path / f"shared{i}") for i in range(2))
                    for k in v[0].values()) >= len(messages) - FAULTS,
        60,
        "both workers to journal everything",
    )  # fmt: skip
    summaries = [run.terminate() for run in runs]
    per_worker = [journal(tmp_path / f"shared{i}") for i in range(2)]
    keys = [k for worker, _ in per_worker for device in worker.values() for k in device]
    assert len(keys) == len(set(keys)) == len(messages) - FAULTS
    assert all(worker for worker, _ in per_worker), "both workers took a share"
    assert sum(letters for _, letters in per_worker) == FAULTS
    committed = sum(s["ingest"]["messages_committed"] for s in summaries)
    assert committed == len(messages)
