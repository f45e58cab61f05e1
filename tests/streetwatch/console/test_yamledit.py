"""Round-trip edits of devices.yaml: the edited zones list changes, every other byte stays."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from ingest.config import load_config
from streetwatch.console.yamledit import EditError, commit, replace_zones, stage, version_of
from tests.conftest import REPO

SHIPPED = (REPO / "devices.yaml").read_text(encoding="utf-8")
NEW = {"id": "test-drawn", "kind": "sidewalk", "polygon": [[40, 20], [300.5, 20], [300, 200]]}
NEW_LINES = (
    "      - id: test-drawn\n"
    "        kind: sidewalk\n"
    "        polygon: [[40, 20], [300.5, 20], [300, 200]]\n"
)


def zones_of(text: str, device_id: str) -> list[dict]:
    device = next(d for d in yaml.safe_load(text)["devices"] if d["id"] == device_id)
    return device.get("zones", [])


def test_unchanged_zones_give_the_same_bytes() -> None:
    for device_id in ("cam-market-01", "gps-muck-07", "cam-kerb-04", "drone-01"):
        assert replace_zones(SHIPPED, device_id, zones_of(SHIPPED, device_id)) == SHIPPED


def test_an_added_zone_is_the_only_change_and_kept_zones_keep_their_comments() -> None:
    zones = [*zones_of(SHIPPED, "cam-market-01"), NEW]
    out = replace_zones(SHIPPED, "cam-market-01", zones)
    kerb = "        polygon: [[630, 70], [768, 70], [768, 130], [630, 130]]\n"
    cut = SHIPPED.index(kerb) + len(kerb)
    assert out == SHIPPED[:cut] + NEW_LINES + SHIPPED[cut:]
    assert "kind: no_parking               # the van and the car parked top right" in out
    assert zones_of(out, "cam-market-01")[-1] == NEW


def test_changed_and_removed_zones_touch_only_their_lines() -> None:
    zones = zones_of(SHIPPED, "cam-market-01")
    zones[1]["polygon"][0] = [510, 250]
    del zones[2]
    out = replace_zones(SHIPPED, "cam-market-01", zones)
    start = SHIPPED.index("      - id: sidewalk-east")
    end = SHIPPED.index("      - id: no-parking-kerb")
    assert out[:start] == SHIPPED[:start]
    assert out[start:].endswith(SHIPPED[end:])
    assert out[start : len(out) - len(SHIPPED) + end] == (
        "      - id: sidewalk-east\n"
        "        kind: sidewalk\n"
        "        polygon: [[510, 250], [768, 250], [768, 576], [500, 576]]\n"
    )
    config_zones = zones_of(out, "cam-market-01")
    assert [z["id"] for z in config_zones] == ["shopfront-wang", "sidewalk-east", "no-parking-kerb"]


def test_a_device_without_zones_gets_a_list_in_the_files_style() -> None:
    out = replace_zones(SHIPPED, "gps-patrol-01", [{**NEW, "kind": "geofence"}])
    anchor = "    crs: gcj02                          # the vehicle unit reports on Chinese map"
    line_end = SHIPPED.index("\n", SHIPPED.index(anchor)) + 1
    block = "    zones:\n" + NEW_LINES.replace("sidewalk", "geofence")
    assert out == SHIPPED[:line_end] + block + SHIPPED[line_end:]
    # PyYAML's own layout: list dashes at their key's column
    plain = "# hand-written notes\n" + yaml.safe_dump(yaml.safe_load(SHIPPED), sort_keys=False)
    out = replace_zones(plain, "gps-patrol-01", [NEW])
    assert out.startswith("# hand-written notes\n")
    assert "  crs: gcj02\n  zones:\n  - id: test-drawn\n    kind: sidewalk\n" in out
    assert zones_of(out, "gps-patrol-01") == [NEW]


def test_emptying_a_list_and_flow_lists() -> None:
    out = replace_zones(SHIPPED, "gps-muck-07", [])
    assert zones_of(out, "gps-muck-07") == []
    school = (
        "    zones:\n"
        "      - id: school-zone\n"
        "        kind: restricted\n"
        "        polygon: [[121.4390, 31.1960], [121.4410, 31.1960], [121.4410, 31.1945], "
        "[121.4390, 31.1945]]\n"
    )
    assert out == SHIPPED.replace(school, "    zones: []\n")
    assert replace_zones(out, "gps-muck-07", []) == out
    again = replace_zones(out, "gps-muck-07", [NEW])
    assert zones_of(again, "gps-muck-07") == [NEW]
    flow = (
        "devices:\n  - id: c\n    kind: camera\n"
        "    zones: [{id: a, kind: sidewalk, polygon: [[0, 0], [1, 0], [1, 1]]}]\n"
        "    name: x # keep\n"
    )
    out = replace_zones(flow, "c", [NEW])
    assert out.endswith("    name: x # keep\n") and zones_of(out, "c") == [NEW]


def test_comments_after_the_list_stay_and_odd_ids_are_quoted() -> None:
    text = (
        "devices:\n"
        "- id: c   # the camera\n"
        "  kind: camera\n"
        "  zones:\n"
        "  - {id: a, kind: sidewalk, polygon: [[0, 0], [1, 0], [1, 1]]}\n"
        "  # - {id: b, kind: sidewalk, polygon: [[0, 0], [1, 0], [1, 1]]}  (kept for later)\n"
        "\n"
        "# the end\n"
    )
    odd = {"id": "true", "kind": "no: parking", "polygon": [[0, 0], [1, 0], [1, 1]]}
    out = replace_zones(text, "c", [odd])
    assert out.endswith(
        "  # - {id: b, kind: sidewalk, polygon: [[0, 0], [1, 0], [1, 1]]}  "
        "(kept for later)\n\n# the end\n"
    )
    assert out.startswith("devices:\n- id: c   # the camera\n  kind: camera\n  zones:\n")
    assert zones_of(out, "c") == [odd]


def test_refusals() -> None:
    with pytest.raises(EditError, match="no device 'nope'"):
        replace_zones(SHIPPED, "nope", [])
    with pytest.raises(EditError, match="not readable as YAML"):
        replace_zones("devices: [\n", "c", [])
    with pytest.raises(EditError, match="no `devices:` list"):
        replace_zones("site: {id: x}\n", "c", [])
    with pytest.raises(EditError, match="one line"):
        replace_zones("devices:\n- {id: c, kind: camera}\n", "c", [NEW])


def test_staged_file_loads_like_the_original_and_commit_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(SHIPPED.replace("var/footage", str(REPO / "var/footage")), encoding="utf-8")
    os.chmod(path, 0o640)
    text = replace_zones(path.read_text(), "cam-market-01", [NEW])
    tmp = stage(path, text)
    assert tmp.parent == path.parent and tmp.name.startswith(".devices.yaml.")
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o640
    staged = load_config(tmp)
    assert staged.storage.root == load_config(path).storage.root  # same folder, same paths
    assert [z.id for z in staged.device("cam-market-01").zones] == ["test-drawn"]
    old = version_of(path.read_bytes())
    commit(tmp, path)
    assert not tmp.exists() and path.read_text() == text
    assert version_of(path.read_bytes()) != old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devices.yaml"]
