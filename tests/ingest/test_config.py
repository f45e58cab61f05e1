"""devices.yaml: the shipped demo loads, and each broken copy of it names file, line and field.

Every broken variant is the shipped file with one edit, so the errors are checked against a
realistic layout (comments, flow and block style). Line numbers are computed from the edited
text, not hard-coded, so the tests survive edits to the demo site.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from ingest.config import (
    SAFE_ID,
    Broker,
    ConfigError,
    DeviceKind,
    SiteConfig,
    ZoneKind,
    load_config,
)
from tests.conftest import REPO

DEMO_FILE = REPO / "devices.yaml"
DEMO_TEXT = DEMO_FILE.read_text(encoding="utf-8")
DEMO = yaml.safe_load(DEMO_TEXT)
DEVICE_INDEX = {device["id"]: index for index, device in enumerate(DEMO["devices"])}
MERCHANT_INDEX = {merchant["id"]: index for index, merchant in enumerate(DEMO["merchants"])}
ZONE_INDEX = {
    zone["id"]: (DEVICE_INDEX[device["id"]], index)
    for device in DEMO["devices"]
    for index, zone in enumerate(device.get("zones", []))
}


def zone_field(zone_id: str, leaf: str) -> str:
    device, zone = ZONE_INDEX[zone_id]
    return f"devices[{device}].zones[{zone}].{leaf}"


# --- editing the shipped file ---------------------------------------------------------------


def _anchor_index(lines: list[str], anchor: str) -> int:
    found = [
        i
        for i, line in enumerate(lines)
        if not line.lstrip().startswith("#") and line.lstrip().startswith(anchor)
    ]
    assert len(found) == 1, f"anchor {anchor!r} matches lines {found} of devices.yaml"
    return found[0]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> str:
    text = line.lstrip(" ")
    return text[2:] if text.startswith("- ") else text


def set_field(text: str, anchor: str, key: str, value: str) -> tuple[str, int]:
    """Set `key:` in the block that starts at the `anchor` line; returns (text, 1-based line)."""
    lines = text.split("\n")
    start = _anchor_index(lines, anchor)
    for i in range(start, len(lines)):
        line = lines[i]
        code = line.strip() and not line.lstrip().startswith("#")
        if i > start and code and _indent(line) <= _indent(lines[start]):
            break
        if _content(line).startswith(f"{key}:"):
            head = line[: len(line) - len(_content(line))]
            lines[i] = f"{head}{key}: {value}"
            return "\n".join(lines), i + 1
    raise AssertionError(f"no {key!r} in the block of {anchor!r}")


def insert_after(text: str, anchor: str, *new: str) -> tuple[str, int]:
    """Insert lines after `anchor`, at the indentation of its block's keys; returns the line."""
    lines = text.split("\n")
    start = _anchor_index(lines, anchor)
    line = lines[start]
    indent = _indent(line) + (2 if line.lstrip().startswith("- ") or line.endswith(":") else 0)
    lines[start + 1 : start + 1] = [" " * indent + item for item in new]
    return "\n".join(lines), start + 2


def delete_line(text: str, anchor: str) -> str:
    lines = text.split("\n")
    del lines[_anchor_index(lines, anchor)]
    return "\n".join(lines)


def line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    return text[: text.index(needle)].count("\n") + 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# what a still-present defect raises inside a strict xfail test
FAILS = (AssertionError, pytest.fail.Exception)

PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<field>\S+): (?P<why>.+)$")


def problems(path: Path) -> list[str]:
    """The problems of a broken file; each must be one `file:line: field: why` line."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = caught.value.problems
    assert found, "a ConfigError carries at least one problem"
    for problem in found:
        match = PROBLEM.match(problem)
        assert match, f"not `file:line: field: why`: {problem!r}"
        assert match["file"] == str(path), problem
    return found


def expect(path: Path, line: int, field: str, fragment: str) -> str:
    """Exactly one problem, at `line` and `field`, whose reason contains `fragment`."""
    found = problems(path)
    assert len(found) == 1, found
    [problem] = found
    assert problem.startswith(f"{path}:{line}: {field}: "), (problem, line, field)
    assert fragment in problem, problem
    return problem


# --- the shipped site ------------------------------------------------------------------------


def test_shipped_devices_yaml_loads() -> None:
    config = load_config(DEMO_FILE)
    assert config.site.id == "demo-street"
    assert config.site.tz.key == "Asia/Shanghai"
    assert {device.kind for device in config.devices} == set(DeviceKind)
    assert [device.id for device in config.devices] == list(DEVICE_INDEX)
    for device in config.devices:
        assert re.fullmatch(SAFE_ID.strip("^$"), device.id)
        assert device.format is not None, "every device gets a payload format"
        assert config.device(device.id) is device
    assert config.device("no-such-device") is None
    merchants = {merchant.id for merchant in config.merchants}
    shopfronts = [
        zone
        for device in config.devices
        for zone in device.zones
        if zone.kind is ZoneKind.SHOPFRONT
    ]
    assert shopfronts and all(zone.merchant in merchants for zone in shopfronts)
    assert config.merchant(shopfronts[0].merchant or "") is not None


def test_shipped_storage_paths_resolve_next_to_the_file() -> None:
    storage = load_config(DEMO_FILE).storage
    assert storage.root == REPO / "var"
    assert storage.journal == REPO / "var" / "journal.sqlite"
    assert storage.evidence == REPO / "var" / "evidence"


def test_a_copy_resolves_storage_against_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(DEMO_FILE, site / "devices.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the file, not to the working directory
    storage = load_config(Path("..") / "site" / "devices.yaml").storage
    assert storage.root == site.resolve() / "var"
    assert storage.journal == site.resolve() / "var" / "journal.sqlite"
    assert storage.evidence == site.resolve() / "var" / "evidence"


def test_explicit_storage_paths(tmp_path: Path) -> None:
    text, _ = insert_after(DEMO_TEXT, "storage:", "journal: db/j.sqlite", "evidence: /srv/ev")
    text, _ = set_field(text, "storage:", "root", str(tmp_path / "abs-root"))
    storage = load_config(write(tmp_path, text)).storage
    assert storage.root == tmp_path / "abs-root"
    assert storage.journal == tmp_path / "db" / "j.sqlite"
    assert storage.evidence == Path("/srv/ev")


def test_default_formats_follow_the_kind() -> None:
    config = load_config(DEMO_FILE)
    by_id = {device.id: device for device in config.devices}
    assert by_id["gps-muck-07"].format == "nmea"
    assert by_id["geomag-fl-01"].format == "json"
    assert by_id["cam-market-01"].format == "jpeg"


# --- ids that become file names and topic levels ---------------------------------------------

ID_MESSAGE = "ids are 1-64 letters, digits, '-' or '_'"


@pytest.mark.parametrize(
    "bad",
    [
        "../drone-01",
        "..",
        "a/b",
        "a+b",
        "'a#b'",
        "a b",
        "''",
        "a" * 65,
        ".hidden",
        "-leading",
        "a.b",
        "'a\\b'",
        '"drone\\t01"',
        "无人机",
    ],
)
def test_unsafe_device_id_is_refused(tmp_path: Path, bad: str) -> None:
    text, line = set_field(DEMO_TEXT, "- id: drone-01", "id", bad)
    expect(write(tmp_path, text), line, f"devices[{DEVICE_INDEX['drone-01']}].id", ID_MESSAGE)


def test_64_character_id_is_accepted(tmp_path: Path) -> None:
    longest = "d" + "-_9" * 21
    assert len(longest) == 64
    text, _ = set_field(DEMO_TEXT, "- id: drone-01", "id", longest)
    assert load_config(write(tmp_path, text)).device(longest) is not None


@pytest.mark.parametrize(
    ("anchor", "field"),
    [
        ("- id: m-0001", f"merchants[{MERCHANT_INDEX['m-0001']}].id"),
        ("- id: sidewalk-east", zone_field("sidewalk-east", "id")),
        ("site:", "site.id"),
    ],
)
def test_other_ids_are_safe_ids_too(tmp_path: Path, anchor: str, field: str) -> None:
    text, line = set_field(DEMO_TEXT, anchor, "id", "../../etc")
    expect(write(tmp_path, text), line, field, ID_MESSAGE)


@pytest.mark.parametrize("quoted", ['"drone-01\\n"', "|\n      drone-01"])
def test_device_id_with_trailing_newline_is_refused(tmp_path: Path, quoted: str) -> None:
    text, line = set_field(DEMO_TEXT, "- id: drone-01", "id", quoted)
    expect(write(tmp_path, text), line, f"devices[{DEVICE_INDEX['drone-01']}].id", ID_MESSAGE)


# --- unknown keys and enumerations ------------------------------------------------------------


def test_misspelt_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "- id: gps-patrol-01", "format", "json")
    lines = text.split("\n")
    lines[line - 1] = lines[line - 1].replace("format:", "fromat:")
    text = "\n".join(lines)
    field = f"devices[{DEVICE_INDEX['gps-patrol-01']}].fromat"
    problem = expect(write(tmp_path, text), line, field, "unknown field 'fromat'")
    assert problem.endswith("did you mean 'format'?")


def test_misspelt_section_gets_a_did_you_mean(tmp_path: Path) -> None:
    text = DEMO_TEXT.replace("\ningest:\n", "\ningset:\n")
    path = write(tmp_path, text)
    [problem] = problems(path)
    assert problem.endswith(": ingset: unknown field 'ingset'; did you mean 'ingest'?"), problem
    # the key's line, or (today) the first line of its block-mapping value just below it
    key_line = line_of(text, "ingset:")
    assert problem.startswith((f"{path}:{key_line}: ", f"{path}:{key_line + 1}: ")), problem


def test_unknown_key_without_a_close_match_lists_the_known_ones(tmp_path: Path) -> None:
    text, line = insert_after(DEMO_TEXT, "- id: geomag-fl-01", "colour: red")
    field = f"devices[{DEVICE_INDEX['geomag-fl-01']}].colour"
    problem = expect(write(tmp_path, text), line, field, "unknown field 'colour'; expected one of:")
    for known in ("bay", "crs", "format", "id", "kind", "topic", "zones"):
        assert known in problem


@pytest.mark.parametrize("crs", ["gcj-02", "WGS84", "epsg:4326", "1"])
def test_wrong_crs_is_refused(tmp_path: Path, crs: str) -> None:
    text, line = set_field(DEMO_TEXT, "- id: gps-patrol-01", "crs", crs)
    field = f"devices[{DEVICE_INDEX['gps-patrol-01']}].crs"
    expect(write(tmp_path, text), line, field, "Input should be 'wgs84', 'gcj02' or 'bd09'")


def test_unknown_device_kind_is_refused(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "- id: drone-01", "kind", "helicopter")
    expect(write(tmp_path, text), line, f"devices[{DEVICE_INDEX['drone-01']}].kind", "Input")


def test_format_that_does_not_fit_the_kind_is_refused(tmp_path: Path) -> None:
    text, format_line = insert_after(DEMO_TEXT, "- id: geomag-fl-01", "format: nmea")
    index = DEVICE_INDEX["geomag-fl-01"]
    [problem] = problems(write(tmp_path, text))
    assert "format 'nmea' does not fit a geomagnetic device; expected one of: json" in problem
    match = PROBLEM.match(problem)
    assert match and match["field"].startswith(f"devices[{index}]")
    assert format_line - 1 <= int(match["line"]) <= format_line  # the device or its format


def test_format_that_does_not_fit_the_kind_names_the_format_line(tmp_path: Path) -> None:
    text, line = insert_after(DEMO_TEXT, "- id: geomag-fl-01", "format: nmea")
    field = f"devices[{DEVICE_INDEX['geomag-fl-01']}].format"
    expect(write(tmp_path, text), line, field, "does not fit a geomagnetic device")


@pytest.mark.parametrize("fmt", ["json", "nmea"])
def test_gps_formats_are_accepted(tmp_path: Path, fmt: str) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: gps-patrol-01", "format", fmt)
    assert load_config(write(tmp_path, text)).device("gps-patrol-01").format == fmt


# --- topics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("fleet/#/position", "'#' must be a whole level and the last one"),
        ("fleet/trucks#", "'#' must be a whole level and the last one"),
        ("fleet/b+/position", "'+' must be a whole level"),
        ("+x/position", "'+' must be a whole level"),
        ("$SYS/broker/load", "topics starting with '$' are reserved"),
        ("'$share/g/fleet/+'", "topics starting with '$' are reserved"),
        ("''", "topic must be 1-1024 bytes without NUL"),
        ('"fleet/\\0/x"', "topic must be 1-1024 bytes without NUL"),
        ("t" * 1025, "topic must be 1-1024 bytes without NUL"),
    ],
)
def test_bad_topic_is_refused(tmp_path: Path, topic: str, why: str) -> None:
    text, line = insert_after(DEMO_TEXT, "- id: gps-patrol-01", f"topic: {topic}")
    expect(write(tmp_path, text), line, f"devices[{DEVICE_INDEX['gps-patrol-01']}].topic", why)


@pytest.mark.parametrize("topic", ["fleet/+/position", "'#'", "fleet/+/+/#", "车队/沪A/位置"])
def test_good_topics_are_accepted(tmp_path: Path, topic: str) -> None:
    text, _ = insert_after(DEMO_TEXT, "- id: gps-patrol-01", f"topic: {topic}")
    device = load_config(write(tmp_path, text)).device("gps-patrol-01")
    assert device is not None and device.topic == yaml.safe_load(topic)


# --- cross-checks -----------------------------------------------------------------------------


def test_duplicate_device_ids_are_refused(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: geomag-fl-02", "id", "geomag-fl-01")
    [problem] = problems(write(tmp_path, text))
    assert "device id 'geomag-fl-01' appears twice" in problem


def test_duplicate_device_id_names_the_second_occurrence(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "- id: geomag-fl-02", "id", "geomag-fl-01")
    field = f"devices[{DEVICE_INDEX['geomag-fl-02']}].id"
    expect(write(tmp_path, text), line, field, "'geomag-fl-01' appears twice")


def test_duplicate_zone_ids_and_topics_are_refused(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: no-parking-centre", "id", "sidewalk-east")
    [problem] = problems(write(tmp_path, text))
    assert "zone id 'sidewalk-east' appears twice" in problem
    text, _ = insert_after(DEMO_TEXT, "- id: gps-patrol-01", "topic: fleet/+/position")
    text, _ = insert_after(text, "- id: gps-muck-07", "topic: fleet/+/position")
    [problem] = problems(write(tmp_path, text))
    assert "topic 'fleet/+/position' appears twice" in problem


def test_shopfront_zone_without_merchant_is_refused(tmp_path: Path) -> None:
    text = delete_line(DEMO_TEXT, "merchant: m-0001")
    device, zone = ZONE_INDEX["shopfront-wang"]
    expect(
        write(tmp_path, text),
        line_of(text, "- id: shopfront-wang"),
        f"devices[{device}].zones[{zone}]",
        "a shopfront zone names its merchant",
    )


def test_zone_naming_an_unknown_merchant_is_refused(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: shopfront-wang", "merchant", "m-9999")
    [problem] = problems(write(tmp_path, text))
    assert "merchant 'm-9999' is not in merchants (m-0001, m-0002)" in problem
    assert "shopfront-wang" in problem


def test_zone_naming_an_unknown_merchant_names_its_line(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "- id: shopfront-wang", "merchant", "m-9999")
    device, zone = ZONE_INDEX["shopfront-wang"]
    expect(write(tmp_path, text), line, f"devices[{device}].zones[{zone}].merchant", "m-9999")


# --- geometry ---------------------------------------------------------------------------------

SIDEWALK = zone_field("sidewalk-east", "polygon")


@pytest.mark.parametrize(
    ("polygon", "why"),
    [
        (
            "[[500, 250], [768, 576], [768, 250], [500, 576]]",
            "not a valid polygon: Self-intersection",
        ),
        ("[[500, 250], [768, 250]]", "needs at least 3 points, got 2"),
        ("[]", "needs at least 3 points, got 0"),
        ("[[0, 0], [1, 1], [2, 2]]", "not a valid polygon"),
        ("[[0, 0], [.inf, 0], [1, 1]]", "finite number"),
        ("[[0, 0, 0], [1, 0, 0], [1, 1, 0]]", "Tuple should have at most 2 items"),
    ],
)
def test_bad_zone_polygon_is_refused(tmp_path: Path, polygon: str, why: str) -> None:
    text, line = set_field(DEMO_TEXT, "- id: sidewalk-east", "polygon", polygon)
    found = problems(write(tmp_path, text))
    assert all(problem.startswith(f"{tmp_path / 'devices.yaml'}:{line}: ") for problem in found)
    assert any(f": {SIDEWALK}" in problem and why in problem for problem in found), found


@pytest.mark.parametrize(
    "shopfront",
    [
        "[[221.43712, 31.19531], [121.43731, 31.19531], [121.43731, 31.19522]]",
        "[[121.43712, 95.0], [121.43731, 31.19531], [121.43731, 31.19522]]",
        "[[31.19531, 121.43712], [31.19531, 121.43731], [31.19522, 121.43731]]",  # lat, lon
    ],
)
def test_shopfront_outside_lon_lat_range_is_refused(tmp_path: Path, shopfront: str) -> None:
    text, line = set_field(DEMO_TEXT, "- id: m-0001", "shopfront", shopfront)
    field = f"merchants[{MERCHANT_INDEX['m-0001']}].shopfront"
    expect(write(tmp_path, text), line, field, "is not [lon, lat] in degrees")


def test_merchant_bow_tie_shopfront_is_refused(tmp_path: Path) -> None:
    bow_tie = "[[121.4371, 31.1953], [121.4373, 31.1952], [121.4373, 31.1953], [121.4371, 31.1952]]"
    text, line = set_field(DEMO_TEXT, "- id: m-0001", "shopfront", bow_tie)
    field = f"merchants[{MERCHANT_INDEX['m-0001']}].shopfront"
    expect(write(tmp_path, text), line, field, "Self-intersection")


PIXELS = "[[500, 300], [700, 300], [700, 500], [500, 500]]"


def test_gps_geofence_in_pixel_coordinates_is_refused(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: school-zone", "polygon", PIXELS)
    [problem] = problems(write(tmp_path, text))
    assert "point [500.0, 300.0] is not [lon, lat] in degrees" in problem


def test_drone_geofence_in_pixel_coordinates_is_refused(tmp_path: Path) -> None:
    text, _ = insert_after(
        DEMO_TEXT,
        "- id: drone-01",
        "zones:",
        f"  - {{id: no-fly, kind: geofence, polygon: {PIXELS}}}",
    )
    [problem] = problems(write(tmp_path, text))
    assert "is not [lon, lat] in degrees" in problem


def test_camera_zone_in_pixels_is_fine() -> None:
    camera = load_config(DEMO_FILE).device("cam-market-01")
    assert camera is not None and max(x for zone in camera.zones for x, _ in zone.polygon) > 180


def test_gps_geofence_in_pixel_coordinates_names_its_line(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "- id: school-zone", "polygon", PIXELS)
    field = zone_field("school-zone", "polygon")
    expect(write(tmp_path, text), line, field, "is not [lon, lat] in degrees")


def test_location_out_of_range_is_refused(tmp_path: Path) -> None:
    text, line = set_field(
        DEMO_TEXT, "- id: geomag-fl-01", "location", "{lat: 121.437, lon: 31.19}"
    )
    field = f"devices[{DEVICE_INDEX['geomag-fl-01']}].location.lat"
    expect(write(tmp_path, text), line, field, "less than or equal to 90")


# --- site and broker --------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Asia/Shanghia", "Beijing", "CST+8", "'../../etc/passwd'", "''"])
def test_bad_timezone_is_refused(tmp_path: Path, zone: str) -> None:
    text, line = set_field(DEMO_TEXT, "site:", "timezone", zone)
    expect(write(tmp_path, text), line, "site.timezone", "unknown IANA timezone")


SECRET = "hunter2-Zq9xT"


@pytest.mark.parametrize("field", ["password", "username"])
@pytest.mark.parametrize("value", [SECRET, f"'{SECRET}'", f"{{value: {SECRET}}}", f"[{SECRET}]"])
def test_secrets_in_the_file_are_refused_and_not_echoed(
    tmp_path: Path, field: str, value: str
) -> None:
    text, line = insert_after(DEMO_TEXT, "broker:", f"{field}: {value}")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    [problem] = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'devices.yaml'}:{line}: broker.{field}: ")
    assert "secrets are not read from the file" in problem
    assert f"'{field}_env'" in problem
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize(
    "where",
    ["broker:", "site:"],
)
@pytest.mark.parametrize("key", ["passwd", "token", "secret", "api_key"])
def test_secret_looking_unknown_keys_are_not_echoed(tmp_path: Path, where: str, key: str) -> None:
    text, _ = insert_after(DEMO_TEXT, where, f"{key}: {SECRET}")
    found = problems(write(tmp_path, text))
    assert any(f"unknown field '{key}'" in problem for problem in found)
    assert not any(SECRET in problem for problem in found)


def test_secret_in_a_password_env_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    text, line = insert_after(DEMO_TEXT, "broker:", "password_env: 987654321")
    problem = expect(write(tmp_path, text), line, "broker.password_env", "valid string")
    assert "987654321" not in problem


def test_password_in_the_broker_url_is_refused(tmp_path: Path) -> None:
    text, line = set_field(DEMO_TEXT, "broker:", "url", f"mqtt://box:{SECRET}@127.0.0.1:1883")
    problem = expect(write(tmp_path, text), line, "broker.url", "")
    assert SECRET not in problem


def test_password_in_a_bad_broker_url_is_not_echoed(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "broker:", "url", f"mqtt://box:{SECRET}@127.0.0.1:99999")
    found = problems(write(tmp_path, text))
    assert not any(SECRET in problem for problem in found), found


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:1883", "expected 'embedded' or mqtt://host:port"),
        ("ws://broker.example:8083", "expected 'embedded' or mqtt://host:port"),
        ("127.0.0.1:1883", "expected 'embedded' or mqtt://host:port"),
        ("mqtt://:1883", "expected 'embedded' or mqtt://host:port"),
        ("Embedded", "expected 'embedded' or mqtt://host:port"),
        ("mqtt://127.0.0.1:99999", "port is not a number in 0-65535"),
        ("mqtt://127.0.0.1:-1", "port is not a number in 0-65535"),
        ("mqtt://127.0.0.1:mqtt", "port is not a number in 0-65535"),
        ("'mqtt://[::1'", "Invalid IPv6 URL"),
    ],
)
def test_bad_broker_url_is_refused(tmp_path: Path, url: str, why: str) -> None:
    text, line = set_field(DEMO_TEXT, "broker:", "url", url)
    expect(write(tmp_path, text), line, "broker.url", why)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("mqtt://broker.example", "broker.example", 1883, False),
        ("'mqtt://[::1]:1884'", "::1", 1884, False),
        ("ssl://10.0.0.2:8884", "10.0.0.2", 8884, True),
    ],
)
def test_good_broker_urls(tmp_path: Path, url: str, host: str, port: int, tls: bool) -> None:
    text, _ = set_field(DEMO_TEXT, "broker:", "url", url)
    broker = load_config(write(tmp_path, text)).broker
    assert (broker.host, broker.port, broker.uses_tls, broker.embedded) == (host, port, tls, False)


def test_embedded_broker(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "broker:", "url", "embedded")
    assert load_config(write(tmp_path, text)).broker.embedded


def test_embedded_broker_default_port_keeps_clear_of_a_local_mosquitto() -> None:
    broker = Broker(url="embedded")
    assert broker.embedded_port == 11883
    assert (broker.port, broker.connect_url) == (11883, "mqtt://127.0.0.1:11883")


@pytest.mark.parametrize(
    "tls",
    [
        "{cert_file: /etc/streetwatch/box.crt}",
        "{ca_file: /etc/streetwatch/ca.crt, key_file: /etc/streetwatch/box.key}",
    ],
)
def test_tls_certificate_and_key_go_together(tmp_path: Path, tls: str) -> None:
    text, line = insert_after(DEMO_TEXT, "broker:", f"tls: {tls}")
    expect(write(tmp_path, text), line, "broker.tls", "cert_file and key_file go together")


def test_tls_key_file_path_is_not_echoed(tmp_path: Path) -> None:
    text, line = insert_after(DEMO_TEXT, "broker:", "tls: {cert_file: /a.crt, key_file: 42}")
    problem = expect(write(tmp_path, text), line, "broker.tls.key_file", "")
    assert "42" not in problem.split("broker.tls.key_file:")[1]


def test_full_tls_loads(tmp_path: Path) -> None:
    text, _ = insert_after(
        DEMO_TEXT, "broker:", "tls: {ca_file: ca.crt, cert_file: box.crt, key_file: box.key}"
    )
    broker = load_config(write(tmp_path, text)).broker
    assert (
        broker.uses_tls and broker.port == 11883
    )  # the embedded broker's port, as devices.yaml names it
    assert broker.tls is not None and broker.tls.key_file == Path("box.key")


# --- several problems, whole-file problems ----------------------------------------------------


def test_several_problems_in_one_file_are_all_reported(tmp_path: Path) -> None:
    text, tz_line = set_field(DEMO_TEXT, "site:", "timezone", "Mars/Olympus")
    text, url_line = set_field(text, "broker:", "url", "http://x:1")
    text, id_line = set_field(text, "- id: drone-01", "id", "a/b")
    text, crs_line = set_field(text, "- id: gps-patrol-01", "crs", "utm")
    text, key_line = insert_after(text, "- id: geomag-fl-03", "fromat: json")
    text, shop_line = set_field(text, "- id: m-0002", "shopfront", "[[0, 0], [1, 1]]")
    path = write(tmp_path, text)
    found = problems(path)
    expected = {
        (tz_line, "site.timezone"),
        (url_line, "broker.url"),
        (id_line, f"devices[{DEVICE_INDEX['drone-01']}].id"),
        (crs_line, f"devices[{DEVICE_INDEX['gps-patrol-01']}].crs"),
        (key_line, f"devices[{DEVICE_INDEX['geomag-fl-03']}].fromat"),
        (shop_line, f"merchants[{MERCHANT_INDEX['m-0002']}].shopfront"),
    }
    got = set()
    for problem in found:
        match = PROBLEM.match(problem)
        assert match
        got.add((int(match["line"]), match["field"]))
    assert got == expected, found


def test_several_cross_check_problems_are_all_reported(tmp_path: Path) -> None:
    text, _ = set_field(DEMO_TEXT, "- id: geomag-fl-02", "id", "geomag-fl-01")
    text, _ = set_field(text, "- id: shopfront-wang", "merchant", "m-9999")
    text, _ = set_field(text, "- id: school-zone", "polygon", PIXELS)
    found = problems(write(tmp_path, text))
    assert len(found) == 3, found


def test_empty_file_names_the_required_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert problems(path) == [
        f"{path}:1: site: Field required",
        f"{path}:1: devices: Field required",
    ]


def test_a_list_instead_of_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- site\n- devices\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}:1: expected a mapping with site, broker, devices, ..."
    ]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    ]


def test_site_config_refuses_wrong_types_of_whole_sections(tmp_path: Path) -> None:
    text = DEMO_TEXT.replace("\nmerchants:\n", "\nmerchants: none\nold_merchants:\n")
    found = problems(write(tmp_path, text))
    assert any(": merchants: Input should be a valid list" in problem for problem in found)


# --- credentials from the environment ---------------------------------------------------------


def _with_env_names(tmp_path: Path) -> Broker:
    text, _ = insert_after(
        DEMO_TEXT, "broker:", "username_env: SW_TEST_MQTT_USER", "password_env: SW_TEST_MQTT_PASS"
    )
    return load_config(write(tmp_path, text)).broker


def test_credentials_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SW_TEST_MQTT_USER", "box-7")
    monkeypatch.setenv("SW_TEST_MQTT_PASS", SECRET)
    broker = _with_env_names(tmp_path)
    assert broker.credentials() == ("box-7", SECRET)
    assert SECRET not in repr(broker)


def test_a_named_but_unset_variable_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SW_TEST_MQTT_USER", "box-7")
    monkeypatch.delenv("SW_TEST_MQTT_PASS", raising=False)
    broker = _with_env_names(tmp_path)
    with pytest.raises(ConfigError) as caught:
        broker.credentials()
    assert caught.value.problems == [
        "broker: environment variable SW_TEST_MQTT_PASS is named but not set"
    ]


def test_an_empty_variable_is_an_empty_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SW_TEST_MQTT_PASS", "")
    assert Broker(password_env="SW_TEST_MQTT_PASS").credentials() == (None, "")


def test_no_names_means_no_credentials() -> None:
    assert load_config(DEMO_FILE).broker.credentials() == (None, None)


def test_site_config_validates_directly_without_a_file(tmp_path: Path) -> None:
    config = SiteConfig.model_validate(
        {"site": {"id": "s1"}, "devices": [{"id": "g", "kind": "gps", "format": "nmea"}]}
    )
    assert config.device("g") is not None
    assert config.default_topic("g", config.device("g").streams[0]) == "streetwatch/s1/g/gps"


@pytest.mark.parametrize("point", ["['0', '0']", "[true, 1]"])
def test_polygon_points_must_be_numbers(tmp_path: Path, point: str) -> None:
    text = DEMO_TEXT.replace("[[0, 300], [250, 300]", f"[{point}, [250, 300]", 1)
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "zones[0].polygon[0]" in str(caught.value)


def test_reconnect_delays_must_be_ordered(tmp_path: Path) -> None:
    text = DEMO_TEXT.replace(
        "  session_expiry_s: 604800",
        "  reconnect: {min_delay_s: 30, max_delay_s: 5}\n  session_expiry_s: 604800",
    )
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="min_delay_s is larger than max_delay_s"):
        load_config(path)


def test_a_copy_with_other_devices_finds_its_own_devices():
    config = load_config(REPO / "devices.yaml")
    assert config.device("cam-market-01") is not None  # builds the lookup
    kept = [d for d in config.devices if d.id != "cam-market-01"]
    copy = config.model_copy(update={"devices": kept})
    assert copy.device("cam-market-01") is None
    assert config.device("cam-market-01") is not None
