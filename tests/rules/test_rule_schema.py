import os
from datetime import UTC, datetime

import pytest
from rulekit import rule, site, write_rules

from ingest.yamlsource import ConfigError
from rules.schema import CompiledSchedule, Schedule, load_rules, parse_duration


def _problems(tmp_path, text, name="r.yaml"):
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(folder, site())
    return info.value.problems


GOOD = """\
id: bikes
name: Bikes
category: 市容管理/非机动车乱停放
condition:
  kind: presence
  subject: [bicycle]
  zone_kind: no_parking
  dwell: 5m
dispose_within: 15m
"""


def test_single_rule_file_and_list_file_load(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "one.yaml").write_text(GOOD)
    write_rules(
        folder, rule("two", condition={"kind": "occupancy", "zone": "bay-1"}), name="two.yml"
    )
    rules = load_rules(folder, site())
    assert [r.id for r in rules.rules] == ["bikes", "two"]
    bikes = rules.get("bikes")
    assert bikes.rule.condition.dwell == 300
    assert bikes.rule.dispose_within == 900
    assert bikes.line == 1 and bikes.source.endswith("one.yaml")


def test_unknown_key_names_file_line_and_did_you_mean(tmp_path):
    problems = _problems(tmp_path, GOOD.replace("  dwell: 5m", "  dwel: 5m"))
    assert len(problems) == 1
    assert problems[0].endswith(
        "r.yaml:8: condition.dwel: unknown field 'dwel'; did you mean 'dwell'?"
    )


def test_unknown_key_inside_all_clause(tmp_path):
    text = """\
rules:
  - id: x
    name: x
    category: a/b
    condition:
      all:
        - kind: occupancy
          zone: bay-1
        - kind: presence
          subjetc: car
"""
    problems = _problems(tmp_path, text)
    assert problems == [
        f"{tmp_path}/rules/r.yaml:10: rules[0].condition.all[1].subjetc: unknown field 'subjetc'; "
        "did you mean 'subject'?"
    ]


@pytest.mark.parametrize("bad", ["5 minutes", "5min", "-3s", "m5", "true"])
def test_bad_duration_says_what_is_valid(tmp_path, bad):
    problems = _problems(tmp_path, GOOD.replace("dwell: 5m", f"dwell: {bad}"))
    assert len(problems) == 1
    assert ":8: condition.dwell: expected a duration like 30s, 5m, 1h30m" in problems[0]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), (90, 90), ("1.5m", 90), ("0s", 0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_unknown_zone_and_device_at_their_lines_with_suggestions(tmp_path):
    text = GOOD.replace("  zone_kind: no_parking\n", "  zone: [np-1, np-2]\n  device: cam-one\n")
    problems = _problems(tmp_path, text)
    assert len(problems) == 2
    assert problems[0].endswith(
        ":7: condition.zone[1]: unknown zone 'np-2' (not in devices.yaml); did you mean 'np-1'?"
    )
    assert ":8: condition.device: unknown device 'cam-one'" in problems[1]
    assert "did you mean 'cam-1'?" in problems[1]


def test_unknown_subject_zone_kind_and_state(tmp_path):
    text = GOOD.replace("[bicycle]", "[bicycel]").replace("no_parking", "no-parking")
    problems = _problems(tmp_path, text)
    assert any("unknown subject 'bicycel'; did you mean 'bicycle'?" in p for p in problems)
    assert any("unknown zone kind 'no-parking'; did you mean 'no_parking'?" in p for p in problems)
    problems = _problems(
        tmp_path,
        GOOD.replace("kind: presence", "kind: occupancy\n  state: occupid").replace(
            "  subject: [bicycle]\n", ""
        ),
    )
    assert any("unknown occupancy state 'occupid'; did you mean 'occupied'?" in p for p in problems)


def test_bay_ids_are_zone_ids(tmp_path):
    folder = write_rules(
        tmp_path / "rules", rule("b", condition={"kind": "occupancy", "zone": ["bay-1", "bay-2"]})
    )
    assert len(load_rules(folder, site())) == 1


NEVER = "so the rule can never fire"
KINDS_THERE = "zone kinds there: fire_lane, no_parking, restricted, shopfront, sidewalk"


def test_a_zone_kind_no_device_has_is_refused_with_the_kinds_there(tmp_path):
    # `check` used to accept it: a rule that can never fire
    problems = _problems(tmp_path, GOOD.replace("zone_kind: no_parking", "zone_kind: geofence"))
    assert problems == [
        f"{tmp_path}/rules/r.yaml:7: condition.zone_kind: no zone of kind 'geofence' in "
        f"devices.yaml, {NEVER}; {KINDS_THERE}"
    ]


def test_one_existing_kind_of_several_is_enough(tmp_path):
    # a catalog rule may name kinds a small site lacks, as long as one of them is there
    folder = write_rules(
        tmp_path / "rules",
        rule("r", condition={"kind": "presence", "zone_kind": ["geofence", "sidewalk"]}),
    )
    assert len(load_rules(folder, site())) == 1


def test_zones_devices_and_kinds_that_exclude_each_other_are_refused(tmp_path):
    text = """\
rules:
  - id: zone-and-kind
    name: x
    category: a/b
    condition: {kind: presence, zone: [np-1, walk-1], zone_kind: fire_lane}
  - id: device-and-kind
    name: x
    category: a/b
    condition: {kind: geofence, device: truck-1, zone_kind: no_parking}
  - id: zone-of-another-device
    name: x
    category: a/b
    condition:
      all:
        - {kind: occupancy, zone: bay-1}
        - {kind: presence, zone: bay-2, device: cam-1}
"""
    problems = _problems(tmp_path, text)
    where = f"{tmp_path}/rules/r.yaml"
    assert problems == [
        f"{where}:5: rules[0].condition.zone_kind: none of the zones named in zone is of kind "
        f"'fire_lane' (walk-1 is sidewalk, np-1 is no_parking), {NEVER}",
        f"{where}:9: rules[1].condition.zone_kind: device truck-1 has no zone of kind "
        f"'no_parking' (its zone kinds: restricted), {NEVER}",
        f"{where}:16: rules[2].condition.all[1].zone: no zone named in zone belongs to device "
        f"cam-1 (bay-2 is mag-2's), {NEVER}",
    ]


def test_an_unknown_zone_is_reported_once_not_also_as_unreachable(tmp_path):
    problems = _problems(tmp_path, GOOD.replace("zone_kind: no_parking", "zone: [np-9]"))
    assert len(problems) == 1 and "unknown zone 'np-9'" in problems[0]


def test_a_disabled_rule_may_name_kinds_the_site_lacks(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    text = GOOD.replace("zone_kind: no_parking", "zone_kind: geofence") + "enabled: false\n"
    (folder / "a.yaml").write_text(text)
    assert len(load_rules(folder, site())) == 0


@pytest.mark.timeout(30)
def test_a_fifo_and_a_link_to_dev_zero_among_the_rules_are_refused_by_name(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "good.yaml").write_text(GOOD)
    os.mkfifo(folder / "pipe.yaml")
    (folder / "zero.yml").symlink_to("/dev/zero")
    with pytest.raises(ConfigError) as info:
        load_rules(folder, site())
    assert info.value.problems == [
        f"{folder}/pipe.yaml: cannot read: it is a FIFO (named pipe), not a regular file",
        f"{folder}/zero.yml: cannot read: it is a character device, not a regular file",
    ]
    with pytest.raises(ConfigError) as info:
        load_rules(folder / "pipe.yaml", site())  # -r naming a FIFO
    assert "it is a FIFO (named pipe), not a regular file" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_rules("/dev/zero", site())
    assert info.value.problems == [
        "/dev/zero: cannot read: it is a character device, not a regular file"
    ]


def test_party_merchant_requires_shopfront_only(tmp_path):
    problems = _problems(tmp_path, GOOD + "party: merchant\n")
    assert problems[0].endswith(
        "r.yaml:10: party: merchant is the merchant of a shopfront zone, but the condition "
        "matches other zones too; add zone_kind: shopfront (or name shopfront zones)"
    )


def test_condition_shape_errors(tmp_path):
    text = GOOD.replace("  kind: presence\n", "  all: [{kind: presence}]\n  kind: presence\n")
    problems = _problems(tmp_path, text)
    assert "a condition is one clause (with `kind`) or `all: [...]` or `any: [...]`" in problems[0]
    text = """\
id: x
name: x
category: a/b
condition:
  any: [{kind: presence}]
  dwell: 5m
"""
    problems = _problems(tmp_path, text)
    assert "dwell belong inside each clause of all/any" in problems[0]


def test_duplicate_ids_across_files(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(GOOD)
    (folder / "b.yaml").write_text(GOOD)
    with pytest.raises(ConfigError) as info:
        load_rules(folder, site())
    assert info.value.problems[0].endswith(
        f"b.yaml:1: id: rule id 'bikes' also defined at {folder}/a.yaml:1"
    )


def test_problems_of_every_file_are_reported(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(GOOD.replace("dwell: 5m", "dwell: 5 min"))
    (folder / "b.yaml").write_text("id: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_rules(folder, site())
    assert len(info.value.problems) == 2
    assert "b.yaml:" in info.value.problems[1] and "YAML syntax" in info.value.problems[1]


def test_disabled_rule_is_validated_but_not_loaded(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(GOOD + "enabled: false\n")
    assert len(load_rules(folder, site())) == 0


def test_bad_schedule(tmp_path):
    problems = _problems(
        tmp_path, GOOD + "schedule:\n  windows: ['7:00-25:00']\n  weekdays: [mon, tues, fun]\n"
    )
    assert any(":11: schedule.windows: hours are 00-23" in p for p in problems)
    assert any("unknown weekday 'fun'" in p for p in problems)


def _sched(**fields):
    return CompiledSchedule.of(Schedule(**fields), site().site.tz)


def _sh(day, hour, minute=0):
    """A time in Asia/Shanghai on 2026-11-<day> (23 is a Monday), as UTC."""
    from zoneinfo import ZoneInfo

    return datetime(2026, 11, day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def test_schedule_over_midnight_belongs_to_the_starting_weekday():
    s = _sched(windows=["22:00-06:00"], weekdays=["fri"])  # Friday night into Saturday
    assert s.active(_sh(27, 23))  # Fri 23:00
    assert s.active(_sh(28, 5, 59))  # Sat 05:59
    assert not s.active(_sh(28, 6))  # Sat 06:00
    assert not s.active(_sh(28, 23))  # Sat 23:00: Saturday is not in weekdays
    assert not s.active(_sh(27, 5))  # Fri 05:00 belongs to Thursday night


def test_schedule_uses_site_timezone_not_utc():
    s = _sched(windows=["07:00-09:00"])
    assert s.active(datetime(2026, 11, 23, 0, 30, tzinfo=UTC))  # 08:30 in Shanghai
    assert not s.active(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))  # 16:00 in Shanghai
    berlin = _sched(windows=["07:00-09:00"], timezone="Europe/Berlin")
    assert berlin.active(datetime(2026, 11, 23, 7, 30, tzinfo=UTC))  # 08:30 in Berlin


def test_schedule_across_a_dst_change():
    s = _sched(windows=["01:30-03:30"], timezone="Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Berlin
    assert s.active(datetime(2026, 3, 29, 0, 45, tzinfo=UTC))  # 01:45 CET
    assert s.active(datetime(2026, 3, 29, 1, 15, tzinfo=UTC))  # 03:15 CEST
    assert not s.active(datetime(2026, 3, 29, 1, 45, tzinfo=UTC))  # 03:45 CEST


def test_next_active():
    s = _sched(windows=["07:00-09:00", "15:00-18:00"], weekdays=["mon", "tue", "wed", "thu", "fri"])
    assert s.next_active(_sh(23, 10)) == _sh(23, 15)
    assert s.next_active(_sh(23, 8)) == _sh(23, 8)
    assert s.next_active(_sh(27, 19)) == _sh(30, 7)  # Friday evening -> Monday morning
    always = _sched()
    assert always.next_active(_sh(23, 3)) == _sh(23, 3)


def test_subjects_a_camera_maps_its_classes_to_are_known(tmp_path):
    data = site().model_dump(mode="json")
    data["devices"][0]["detect"] = {"weights": "model.pt", "classes": {"hawker_cart": "cart2"}}
    from ingest.config import SiteConfig

    config = SiteConfig.model_validate(data)
    folder = write_rules(
        tmp_path / "r", rule("c", condition={"kind": "presence", "subject": ["cart2", "person"]})
    )
    assert len(load_rules(folder, config)) == 1
    bad = write_rules(tmp_path / "b", rule("c", condition={"kind": "presence", "subject": "cart3"}))
    with pytest.raises(ConfigError, match=r"subject: unknown subject 'cart3'"):
        load_rules(bad, config)
    # a camera naming subjects after its model's own classes: any name goes
    data["devices"][0]["detect"] = {"weights": "model.pt"}
    assert len(load_rules(bad, SiteConfig.model_validate(data))) == 1
