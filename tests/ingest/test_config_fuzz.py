"""Fuzzing the config loader: whatever the file holds, the only failure is a ConfigError.

(a) arbitrary text, bytes and YAML token soup through `parse_yaml` + `validate(doc, SiteConfig)`;
(b) the demo devices.yaml as a dict with random fields replaced, removed or added, written back
    as YAML and loaded with `load_config`: it loads, or every problem is `file:line: ...`; ids
    that load are safe ids.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.config import SiteConfig, load_config
from ingest.yamlsource import ConfigError, parse_yaml, validate
from tests.conftest import REPO

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
DEMO: dict[str, Any] = yaml.safe_load((REPO / "devices.yaml").read_text(encoding="utf-8"))

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def parse_and_validate(raw: str | bytes) -> None:
    try:
        validate(parse_yaml(raw, "fuzz.yaml"), SiteConfig)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("fuzz.yaml"), problem


# --- (a) unstructured input -------------------------------------------------------------------


@settings(FUZZ, max_examples=300)
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    parse_and_validate(text)


@settings(FUZZ, max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_config_error(raw: bytes) -> None:
    parse_and_validate(raw)


# Pieces of YAML syntax, so that random sequences reach the composer and the walker instead of
# stopping at the first character, explicit scalar tags included.
TOKENS = [
    *(
        "!!int ",
        "!!float ",
        "!!bool ",
        "!!timestamp ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "- ",
        "? ",
        "\n",
        "  ",
        "    ",
        "\t",
        "'",
        '"',
        "#",
        "|\n",
        ">\n",
    ),
    *("&a ", "*a", "&b ", "*b", "<<: ", "<<: *a", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! x:\n"),
    *("!!str ", "!!map ", "!!seq ", "!!set ", "!!omap ", "!!binary ", "!local ", "!!python/tuple "),
    *("site", "devices", "broker", "id", "kind", "gps", "polygon", "zones", "merchants", "url"),
    *("x", "1", "-1", "1.5", "1e400", ".nan", ".inf", "null", "~", "true", "no", "0x1F", "0o17"),
    *("2024-01-01", "12:30:00", "\\", "@", "`", "%", "\u00e9", "演示", "\x85", "\ufeff"),
]


@settings(FUZZ, max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_yaml_token_soup_raises_only_config_error(text: str) -> None:
    parse_and_validate(text)


# --- (b) the demo site, mutated ---------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-1000, max_value=100_000),
    st.floats(),
    st.text(max_size=24),
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
# ids that are almost safe: letters and digits with the characters that make them dangerous
ID_TEXT = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,70}", fullmatch=True),
    st.text(alphabet="aZ09-_./\\+#$ \t\n:*?~é", max_size=70),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


PATHS = list(_paths(DEMO))
ID_PATHS = [path for path in PATHS if path[-1] == "id"]


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


DICT_PATHS = [(), *(path for path in PATHS if isinstance(_get(DEMO, path), dict))]


def _parent(doc: Any, path: tuple[Any, ...]) -> Any | None:
    """The container holding `path` in the (already mutated) document, or None if gone."""
    try:
        node = _get(doc, path[:-1])
        node[path[-1]]
    except (KeyError, IndexError, TypeError):
        return None
    return node


@st.composite
def mutated_demo(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(DEMO)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["replace", "replace", "id", "delete", "add"]))
        if action == "add":
            try:
                target = _get(doc, draw(st.sampled_from(DICT_PATHS)))
            except (KeyError, IndexError, TypeError):
                continue
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(JSONISH)
            continue
        path = draw(st.sampled_from(ID_PATHS if action == "id" else PATHS))
        parent = _parent(doc, path)
        if parent is None:
            continue
        if action == "delete":
            del parent[path[-1]]
        elif action == "id":
            parent[path[-1]] = draw(ID_TEXT)
        else:
            parent[path[-1]] = draw(JSONISH)
    return doc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config-fuzz")


def _load_or_explain(path: Path) -> SiteConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        assert exc.problems
        located = re.compile(rf"^{re.escape(str(path))}:\d+: ")
        for problem in exc.problems:
            assert located.match(problem), f"problem without file:line: {problem!r}"
        return None


def _assert_ids_safe(config: SiteConfig) -> None:
    ids = [config.site.id]
    ids += [device.id for device in config.devices]
    ids += [zone.id for device in config.devices for zone in device.zones]
    ids += [merchant.id for merchant in config.merchants]
    for value in ids:
        assert re.fullmatch(SAFE_ID, value), f"unsafe id loaded: {value!r}"
    assert len({device.id for device in config.devices}) == len(config.devices)


@settings(FUZZ, max_examples=500)
@given(doc=mutated_demo())
def test_mutated_demo_loads_or_names_file_and_line(fuzz_dir: Path, doc: dict[str, Any]) -> None:
    path = fuzz_dir / "devices.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    config = _load_or_explain(path)
    if config is not None:
        _assert_ids_safe(config)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_fuzzed_ids_that_load_are_safe(fuzz_dir: Path, data: st.DataObject) -> None:
    doc = copy.deepcopy(DEMO)
    for path in data.draw(st.lists(st.sampled_from(ID_PATHS), min_size=1, max_size=4)):
        _get(doc, path[:-1])[path[-1]] = data.draw(ID_TEXT)
    path = fuzz_dir / "ids.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    config = _load_or_explain(path)
    if config is not None:
        _assert_ids_safe(config)


def test_the_unmutated_demo_round_trips(fuzz_dir: Path) -> None:
    path = fuzz_dir / "round-trip.yaml"
    path.write_text(yaml.safe_dump(DEMO, allow_unicode=True, sort_keys=False), encoding="utf-8")
    config = load_config(path)
    assert config.site.id == DEMO["site"]["id"]
    assert [device.id for device in config.devices] == [d["id"] for d in DEMO["devices"]]
