"""Bad rule files and bad polygons: whatever an operator writes, `load_rules` and `load_config`
raise only ConfigError, every problem names `file:line`, and what loads is usable.

(a) the shipped rule catalog, mutated (fields replaced, removed, added; ids, zone and device
    names that try `../`, wildcards and spaces; durations that overflow or go negative), and
    rule-flavoured YAML token soup, through `load_rules` against the demo site;
(b) polygons of camera zones (pixels), GPS geofences ([lon, lat]) and merchant shop fronts:
    random point lists (NaN, infinities, huge, strings, wrong arity) and shaped ones (crossing
    edges, collinear, repeated points): refused naming the zone and file:line, or loaded as a
    valid polygon in range that the zone detectors and geofences can use.

tests/ingest/test_config_fuzz.py fuzzes the rest of devices.yaml in the same way."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from detectors.geofence import Geofence, projection_for
from detectors.zones import PixelZones
from ingest.config import MAX_PIXEL, SAFE_ID, DeviceKind, SiteConfig, load_config
from ingest.yamlsource import ConfigError
from rules.schema import RuleSet, load_rules
from tests.conftest import REPO
from tests.faults.conftest import Reliability

DEMO_TEXT = (REPO / "devices.yaml").read_text(encoding="utf-8")
DEMO: dict[str, Any] = yaml.safe_load(DEMO_TEXT)
CONFIG = load_config(REPO / "devices.yaml")
RULE_FILES = sorted((REPO / "rules" / "catalog").glob("*.yaml")) + sorted(
    (REPO / "streetwatch" / "demo_rules").glob("*.yaml")
)
RULE_DOCS: list[dict[str, Any]] = [yaml.safe_load(p.read_text("utf-8")) for p in RULE_FILES]

EXAMPLES = 200
"""Hypothesis examples per test in `make test`; the soak variants run SOAK_EXAMPLES."""
SOAK_EXAMPLES = 2000


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Tally:
    """What a fuzz test tried and what slipped through, for the reliability ledger."""

    def __init__(self) -> None:
        self.tried = 0
        self.refused = 0
        self.loaded = 0
        self.lost = 0
        """Inputs that raised something other than a located ConfigError, or loaded unusable."""

    def record(self, reliability: Reliability, what: str) -> None:
        reliability.record(
            "bad input",
            what,
            tried=self.tried,
            lost=self.lost,
            refused=self.refused,
            loaded=self.loaded,
        )


@contextmanager
def ledger(reliability: Reliability, what: str) -> Iterator[Tally]:
    """Records the test's row even when it fails: the failing example counts as lost."""
    found = Tally()
    ok = False
    try:
        yield found
        ok = True
    finally:
        if not ok:
            found.lost += 1
        found.record(reliability, what)


def located(problems: list[str], path: Path) -> None:
    assert problems, "a ConfigError without problems"
    where = re.compile(rf"^{re.escape(str(path))}:\d+: \S")
    for problem in problems:
        assert where.match(problem), f"problem without file:line: {problem!r}"


def attempt(tally: Tally, load: Any, path: Path) -> Any | None:
    """Run `load`; a located ConfigError is a refusal (None). Anything else fails the test."""
    tally.tried += 1
    try:
        result = load()
    except ConfigError as exc:
        located(exc.problems, path)
        tally.refused += 1
        return None
    tally.loaded += 1
    return result


# --- (a) rule files ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=24),
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=10,
)
SITE_NAMES = sorted(
    {z.id for d in CONFIG.devices for z in d.zones}
    | {d.bay for d in CONFIG.devices if d.bay}
    | {d.id for d in CONFIG.devices}
    | {"person", "car", "bicycle", "goods", "occupied", "inside", "fire_lane", "shopfront"}
)
NAME_TEXT = st.one_of(
    st.sampled_from(SITE_NAMES),
    st.sampled_from(SITE_NAMES),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.sampled_from(["../etc/passwd", "..", "a/../../b", "fire-lane-1/..", "+", "#", "a/+/b"]),
    st.text(alphabet="aZ09-_./\\+#$ \t\n:*?~é", max_size=40),
)
DURATION_TEXT = st.one_of(
    st.sampled_from(["1e400s", "-5m", "nan", "inf", "10x", "5 m", "1h30", "99999d", "", "0"]),
    st.sampled_from(["30s", "5m", "1h30m", "2d", "0.5s", 90, 0]),
    st.from_regex(r"-?\d{1,12}(\.\d{1,3})?[dhms]?", fullmatch=True),
    st.floats(),
    st.integers(),
)
NAME_KEYS = ("id", "zone", "device", "subject", "zone_kind", "state")
DURATION_KEYS = ("dwell", "within", "cooldown", "dispose_within", "lost_after", "pre", "post")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_rule_file(draw: st.DrawFn) -> str:
    """One or two catalog rules, mutated, as a single-rule file or under `rules:`."""
    docs = [copy.deepcopy(draw(st.sampled_from(RULE_DOCS))) for _ in range(draw(st.integers(1, 2)))]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        doc = draw(st.sampled_from(docs))
        paths = list(_paths(doc))
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        try:
            parent = _get(doc, path[:-1])
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        key = path[-1]
        action = draw(st.sampled_from(["name", "name", "duration", "replace", "delete", "add"]))
        if action == "delete":
            if path != ("id",):  # a rule without an id is one refusal, tried often enough
                del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(JSONISH)
        elif action == "name" or (action != "replace" and key in NAME_KEYS):
            parent[key] = draw(st.one_of(NAME_TEXT, st.lists(NAME_TEXT, max_size=3)))
        elif action == "duration" or key in DURATION_KEYS:
            parent[key] = draw(DURATION_TEXT)
        else:
            parent[key] = draw(JSONISH)
    if len(docs) == 2 and docs[1].get("id") == docs[0].get("id") and draw(st.booleans()):
        docs[1]["id"] = f"{docs[1].get('id')}-2"
    data: Any = docs[0] if len(docs) == 1 and draw(st.booleans()) else {"rules": docs}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


RULE_TOKENS = [
    *("rules:", "\n", "  ", "- ", "id: ", "name: ", "category: ", "condition: ", "kind: "),
    *("all: ", "any: ", "zone: ", "device: ", "subject: ", "state: ", "dwell: ", "within: "),
    *("schedule: ", "windows: ", "weekdays: ", "timezone: ", "places: ", "party: merchant"),
    *("presence", "occupancy", "geofence", "fire-lane-1", "school-zone", "../x", "+", "#"),
    *("[", "]", "{", "}", ", ", ": ", "'", '"', "&a ", "*a", "<<: *a", "!!python/object ", "---\n"),
    *("30s", "1e400s", "-5m", ".nan", ".inf", "07:00-25:00", "24:00-00:00", "Mars/Olympus"),
]


def _valid_duration(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and value >= 0)


def assert_usable(rules: RuleSet, config: SiteConfig) -> None:
    """A rule set that loaded: safe ids, finite durations, names that exist on the site."""
    zones = {z.id for d in config.devices for z in d.zones} | {
        d.bay for d in config.devices if d.bay
    }
    devices = {d.id for d in config.devices}
    for loaded in rules.rules:
        rule = loaded.rule
        assert re.fullmatch(SAFE_ID, rule.id), rule.id
        for value in (rule.cooldown, rule.dispose_within, rule.condition.within):
            assert _valid_duration(value), (rule.id, value)
        for value in (rule.evidence.pre, rule.evidence.post, rule.evidence.sensor_series):
            assert _valid_duration(value), (rule.id, value)
        for clause in rule.condition.clauses():
            assert set(clause.zone) <= zones, (rule.id, clause.zone)
            assert set(clause.device) <= devices, (rule.id, clause.device)
            assert _valid_duration(clause.dwell) and _valid_duration(clause.lost_after)
        for group in rule.condition.places:
            assert set(group) <= zones, (rule.id, group)


def check_rule_text(tmp: Path, text: str, tally: Tally, name: str = "fuzz.yaml") -> None:
    folder = tmp / f"rules-{tally.tried}"
    folder.mkdir()
    path = folder / name
    path.write_text(text, encoding="utf-8")
    rules = attempt(tally, lambda: load_rules(folder, CONFIG), path)
    if rules is not None:
        assert_usable(rules, CONFIG)


def _rule_mutations(examples: int):
    @fuzz(examples)
    @given(text=mutated_rule_file())
    def run(tmp: Path, tally: Tally, text: str) -> None:
        check_rule_text(tmp, text, tally)

    return run


def _rule_soup(examples: int):
    @fuzz(examples)
    @given(text=st.lists(st.sampled_from(RULE_TOKENS), max_size=60).map("".join))
    def run(tmp: Path, tally: Tally, text: str) -> None:
        check_rule_text(tmp, text, tally)

    return run


MUTATED = "fuzzed rule file (mutated catalog)"
SOUP = "fuzzed rule file (YAML token soup)"


def test_mutated_rule_files_load_or_name_file_and_line(
    tmp_path: Path, reliability: Reliability
) -> None:
    with ledger(reliability, MUTATED) as tally:
        _rule_mutations(EXAMPLES)(tmp_path, tally)
    assert tally.refused > 0 and tally.loaded > 0, (tally.refused, tally.loaded)


def test_rule_token_soup_raises_only_located_config_errors(
    tmp_path: Path, reliability: Reliability
) -> None:
    with ledger(reliability, SOUP) as tally:
        _rule_soup(EXAMPLES)(tmp_path, tally)


@pytest.mark.soak
def test_soak_mutated_rule_files(tmp_path: Path, reliability: Reliability) -> None:
    with ledger(reliability, MUTATED) as tally:
        _rule_mutations(SOAK_EXAMPLES)(tmp_path, tally)


@pytest.mark.soak
def test_soak_rule_token_soup(tmp_path: Path, reliability: Reliability) -> None:
    with ledger(reliability, SOUP) as tally:
        _rule_soup(SOAK_EXAMPLES)(tmp_path, tally)


def test_the_catalog_loads_unmutated() -> None:
    """The fuzz starts from rule files that load: a refusal above is the mutation's doing."""
    assert len(load_rules(REPO / "rules" / "catalog", CONFIG)) > 0


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_a_zone_kind_the_site_lacks_is_refused_at_its_line(tmp_path: Path, path: Path) -> None:
    """Each shipped rule with its zone kinds changed to one no device has (`geofence` on the
    fire-lane rule was accepted, and the rule could never fire): refused at every such line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    kinds = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?zone_kind: ", line)]
    if not kinds:
        pytest.skip(f"{path.name} names no zone kind")
    for i in kinds:
        lines[i] = re.sub(r"zone_kind: .*$", "zone_kind: geofence", lines[i])
    (tmp_path / path.name).write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path, CONFIG)
    expected = [f"{tmp_path / path.name}:{i + 1}: " for i in kinds]
    refused = [p for p in info.value.problems if "zone_kind: no zone of kind" in p]
    assert [p[: len(w)] for p, w in zip(refused, expected, strict=True)] == expected
    for problem in refused:
        assert "zone_kind: no zone of kind 'geofence' in devices.yaml" in problem
        assert problem.endswith(
            "zone kinds there: fire_lane, no_parking, restricted, shopfront, sidewalk"
        )


# --- (b) polygons -----------------------------------------------------------------------------

_NOW = datetime(2026, 1, 1, tzinfo=UTC)
CAMERA = next(i for i, d in enumerate(DEMO["devices"]) if d["kind"] == "camera")
GPS = next(i for i, d in enumerate(DEMO["devices"]) if d["kind"] == "gps" and d.get("zones"))
TARGETS = {
    "camera zone": ("devices", CAMERA, "zones", 1, "polygon"),
    "GPS geofence": ("devices", GPS, "zones", 0, "polygon"),
    "merchant shop front": ("merchants", 0, "shopfront"),
}

COORD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-200, max_value=800),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, 90, 180, 181, -90.5, 65535, 65536, 1e308]),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)
POINT = st.one_of(
    st.tuples(COORD, COORD).map(list),
    st.lists(COORD, max_size=4),
    COORD,
)


@st.composite
def shaped_polygon(draw: st.DrawFn, scale: float, origin: tuple[float, float]) -> list[list]:
    """Corners of a real shape, then spoiled: shuffled (edges cross), squashed onto a line,
    repeated, cut short, or pushed out of range; sometimes left intact."""
    n = draw(st.integers(3, 8))
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n)))
    radius = draw(st.floats(0.05, 1.0)) * scale
    ox, oy = origin
    points = [[ox + radius * math.cos(a), oy + radius * math.sin(a)] for a in angles]
    how = draw(st.sampled_from(["keep", "shuffle", "line", "repeat", "cut", "range", "spike"]))
    if how == "shuffle":
        points = draw(st.permutations(points))
    elif how == "line":
        points = [
            [ox + t * scale, oy + t * scale]
            for t in draw(st.lists(st.floats(0, 1), min_size=3, max_size=6))
        ]
    elif how == "repeat":
        points = [points[0]] * draw(st.integers(3, 6)) + points[: draw(st.integers(0, 2))]
    elif how == "cut":
        points = points[: draw(st.integers(0, 2))]
    elif how == "range":
        index = draw(st.integers(0, len(points) - 1))
        points[index] = [draw(st.sampled_from([-1.0, 1e9, 181.0, -91.0, 70000.0])), oy]
    elif how == "spike":
        points.insert(1, list(points[0]))  # a zero-length edge
        points.insert(2, [ox + 2 * radius, oy])
        points.insert(3, list(points[1]))
    return [[round(x, 9), round(y, 9)] for x, y in points]


def polygons(target: str) -> st.SearchStrategy[Any]:
    if target == "camera zone":
        shaped = shaped_polygon(300.0, (400.0, 300.0))
    else:
        shaped = shaped_polygon(0.001, (121.4373, 31.1953))
    return st.one_of(shaped, shaped, st.lists(POINT, max_size=8), JSONISH)


def _owner_id(doc: dict[str, Any], path: tuple[Any, ...]) -> str:
    return _get(doc, path[:-1])["id"]


def assert_polygon_usable(config: SiteConfig, target: str) -> None:
    if target == "merchant shop front":
        points = config.merchants[0].shopfront
    else:
        device = config.devices[TARGETS[target][1]]
        points = device.zones[TARGETS[target][3]].polygon
    assert len(points) >= 3 and all(math.isfinite(v) for p in points for v in p)
    shape = Polygon(points)
    assert shape.is_valid and shape.area > 0, points
    if target == "camera zone":
        assert all(0 <= v <= MAX_PIXEL for p in points for v in p), points
        camera = config.devices[CAMERA]
        PixelZones(camera.zones).update({1: (float(points[0][0]), float(points[0][1]))}, _NOW)
    else:
        assert all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in points), points
    if target == "GPS geofence":
        device = config.devices[GPS]
        projection = projection_for(device.zones, device.route)
        assert projection is not None
        fence = Geofence(device.zones[0], projection)
        assert fence.polygon.is_valid and fence.polygon.area > 0


def check_polygon(tmp: Path, tally: Tally, target: str, polygon: Any) -> None:
    doc = copy.deepcopy(DEMO)
    path_in_doc = TARGETS[target]
    _get(doc, path_in_doc[:-1])[path_in_doc[-1]] = polygon
    path = tmp / f"devices-{tally.tried}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tally.tried += 1
    try:
        config = load_config(path)
    except ConfigError as exc:
        located(exc.problems, path)
        owner = _owner_id(doc, path_in_doc)
        about = [p for p in exc.problems if f".{path_in_doc[-1]}" in p.split(": ")[1]]
        assert about, f"the {target} is not named in {exc.problems}"
        for problem in about:
            assert repr(owner) in problem, f"{target} {owner!r} not named: {problem}"
        tally.refused += 1
        return
    tally.loaded += 1
    assert_polygon_usable(config, target)


def _polygon_fuzz(examples: int):
    @fuzz(examples)
    @given(data=st.data())
    def run(tmp: Path, tally: Tally, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(sorted(TARGETS)))
        check_polygon(tmp, tally, target, data.draw(polygons(target)))

    return run


POLYGONS = "fuzzed polygon (zones, geofences, shop fronts)"


def test_fuzzed_polygons_are_refused_naming_the_zone_or_load_valid(
    tmp_path: Path, reliability: Reliability
) -> None:
    with ledger(reliability, POLYGONS) as tally:
        _polygon_fuzz(EXAMPLES)(tmp_path, tally)
    assert tally.refused > 0 and tally.loaded > 0, (tally.refused, tally.loaded)


@pytest.mark.soak
def test_soak_fuzzed_polygons(tmp_path: Path, reliability: Reliability) -> None:
    with ledger(reliability, POLYGONS) as tally:
        _polygon_fuzz(SOAK_EXAMPLES)(tmp_path, tally)


BOWTIE_PX = [[500, 250], [768, 576], [768, 250], [500, 576]]
BOWTIE_LL = [[121.439, 31.196], [121.441, 31.1945], [121.441, 31.196], [121.439, 31.1945]]
NAMED_CASES = [
    ("camera zone", BOWTIE_PX, "Self-intersection"),
    ("camera zone", [[0, 0], [50, 50], [100, 100]], "lie on one line"),
    ("camera zone", [[5, 5], [5, 5], [5, 5], [9, 9]], "fewer than 3 distinct points"),
    ("camera zone", [[0, 0], [float("nan"), 0], [1, 1]], "finite number"),
    ("camera zone", [[0, 0], [float("inf"), 0], [1, 1]], "finite number"),
    ("camera zone", [[-10, 0], [100, 0], [100, 100]], "not a pixel"),
    ("camera zone", [[0, 0], [1e12, 0], [1e12, 1e12]], "not a pixel"),
    ("camera zone", [[0, 0], ["12", 0], [1, 1]], "valid number"),
    ("GPS geofence", BOWTIE_LL, "Self-intersection"),
    ("GPS geofence", [[121.0, 31.0], [121.0, 95.0], [122.0, 31.0]], "not [lon, lat]"),
    ("GPS geofence", [[121.0, 31.0], [121.0, 31.0]], "at least 3 points"),
    ("merchant shop front", BOWTIE_LL, "Self-intersection"),
    ("merchant shop front", [[200, 0], [201, 0], [201, 1]], "not [lon, lat]"),
]


def test_each_kind_of_bad_polygon_is_refused_with_zone_and_line(
    tmp_path: Path, reliability: Reliability
) -> None:
    with ledger(reliability, "invalid polygon (named cases)") as tally:
        refuse_named_cases(tmp_path, tally)


def refuse_named_cases(tmp_path: Path, tally: Tally) -> None:
    wrong = []
    for target, polygon, why in NAMED_CASES:
        doc = copy.deepcopy(DEMO)
        _get(doc, TARGETS[target][:-1])[TARGETS[target][-1]] = polygon
        path = tmp_path / f"named-{tally.tried}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        tally.tried += 1
        try:
            load_config(path)
        except ConfigError as exc:
            owner = _owner_id(doc, TARGETS[target])
            text = "\n".join(exc.problems)
            if why in text and repr(owner) in text and re.search(rf"{path}:\d+: ", text):
                tally.refused += 1
                continue
            wrong.append((target, polygon, exc.problems))
            continue
        wrong.append((target, polygon, "loaded"))
    tally.lost += len(wrong)
    assert not wrong, wrong


def test_zone_detectors_build_from_every_polygon_that_loads() -> None:
    """The shipped sites' zones work in the detectors they feed (the fuzz's usable check)."""
    for site in (REPO / "devices.yaml", REPO / "deploy" / "devices.production.yaml"):
        config = load_config(site)
        for device in config.devices:
            if device.kind is DeviceKind.CAMERA and device.zones:
                PixelZones(device.zones)
            elif device.zones:
                projection = projection_for(device.zones, device.route)
                assert projection is not None
                for zone in device.zones:
                    assert Geofence(zone, projection).polygon.is_valid
