"""devices.yaml for JT/T 808 terminals: the `jt808` section, `protocol: jt808`, `phone` and
`inputs` on gps devices. The shipped file has one truck; each broken copy names file, line and
field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ingest.config import ConfigError, load_config
from ingest.config.jt808 import Protocol
from tests.conftest import REPO

DEMO_TEXT = (REPO / "devices.yaml").read_text(encoding="utf-8")


def problems(tmp_path: Path, old: str, new: str) -> list[str]:
    assert DEMO_TEXT.count(old) == 1, old
    path = tmp_path / "devices.yaml"
    path.write_text(DEMO_TEXT.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_the_shipped_site_has_a_jt808_truck() -> None:
    config = load_config(REPO / "devices.yaml")
    assert config.jt808 is not None and config.jt808.port == 7611
    truck = config.device("gps-muck-08")
    assert truck is not None and truck.protocol is Protocol.JT808
    assert config.jt808_devices() == {"13912344329": truck}  # leading zeros do not count
    assert truck.inputs == {"dump_raised": "io:0"}


@pytest.mark.parametrize(
    ("old", "new", "field", "why"),
    [
        ('phone: "013912344329"', 'phone: "0139-1234"', "phone", "1-20 digits"),
        ('phone: "013912344329"', "phone: null", "devices.", "needs the terminal's `phone`"),
        ('{dump_raised: "io:0"}', '{dump_raised: "io:16"}', "inputs", "io:N (0-15"),
        ('{dump_raised: "io:0"}', '{dump_raised: "pin:1"}', "inputs", "expected status:N"),
        ("port: 7611", "port: 70000", "jt808.port", "less than or equal to 65535"),
    ],
)
def test_bad_settings_name_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, why: str
) -> None:
    found = problems(tmp_path, old, new)
    assert any(field in p and why in p and "devices.yaml:" in p for p in found), found


def test_one_phone_for_two_devices(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "    format: json\n    crs: gcj02",
        '    format: json\n    crs: gcj02\n    protocol: jt808\n    phone: "13912344329"',
    )
    assert any(".phone: phone '013912344329' is also devices[" in p for p in found), found


def test_a_jt808_device_needs_the_section(tmp_path: Path) -> None:
    section = DEMO_TEXT[DEMO_TEXT.index("jt808:  ") : DEMO_TEXT.index("storage:")]
    found = problems(tmp_path, section, "")
    text = DEMO_TEXT.replace(section, "")
    line = text[: text.index("    protocol: jt808")].count("\n") + 1
    index = [d["id"] for d in yaml.safe_load(text)["devices"]].index("gps-muck-08")
    assert found == [
        f"{tmp_path / 'devices.yaml'}:{line}: devices[{index}].protocol: device gps-muck-08 uses"
        " protocol jt808 but there is no `jt808:` section (host, port) to listen on"
    ]


def test_jt808_is_for_gps_and_phone_for_jt808(tmp_path: Path) -> None:
    bay = "  - id: geomag-fl-01\n"
    found = problems(tmp_path, bay, bay + "    protocol: jt808\n")
    assert any("protocol jt808 is for gps devices, not a geomagnetic device" in p for p in found)
    patrol = "    format: json\n    crs: gcj02"
    found = problems(tmp_path, patrol, patrol + '\n    phone: "1"')
    assert any("phone and inputs are for devices with `protocol: jt808`" in p for p in found)
