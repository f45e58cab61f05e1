"""ingest.yamlsource: positions of values, hostile YAML, and pydantic errors as file:line lines."""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
import tracemalloc
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from ingest.yamlsource import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    ConfigError,
    YamlDocument,
    format_loc,
    load_yaml,
    parse_yaml,
    read_config_bytes,
    validate,
)


def write(tmp_path: Path, content: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert caught.value.problems, "a ConfigError always carries at least one problem"
    return caught.value.problems


# --- positions ------------------------------------------------------------------------------

NESTED = """\
# a comment line first
site:
  id: demo
  zones:
    - id: a
      polygon:
        - [0, 0]
        - [1, 0]
        - [1, 1]
    - id: b
      kind: sidewalk
flow: {a: 1, b: [x, y, z]}
empty:
last: 42
"""


def test_line_numbers_of_nested_values_and_list_items(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, NESTED))
    assert doc.source == str(tmp_path / "c.yaml")
    assert doc.data["site"]["zones"][1]["kind"] == "sidewalk"
    lines = doc.lines
    assert lines[()] == 2  # the root mapping starts at its first key, after the comment
    assert lines[("site", "id")] == 3
    assert lines[("site", "zones", 0)] == 5
    assert lines[("site", "zones", 0, "id")] == 5
    assert lines[("site", "zones", 0, "polygon", 0)] == 7
    assert lines[("site", "zones", 0, "polygon", 2)] == 9
    assert lines[("site", "zones", 0, "polygon", 2, 1)] == 9
    assert lines[("site", "zones", 1)] == 10
    assert lines[("site", "zones", 1, "kind")] == 11
    assert lines[("flow", "a")] == 12
    assert lines[("flow", "b", 2)] == 12
    assert lines[("last",)] == 14


def test_line_of_falls_back_to_the_deepest_existing_value(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, NESTED))
    # pydantic locations may go deeper than the file (a missing field, a tuple member)
    assert doc.line_of(("site", "zones", 1, "polygon")) == 10
    assert doc.line_of(("site", "zones", 0, "polygon", 1, 0, "x")) == 8
    assert doc.line_of(("nowhere", "at", "all")) == 2
    assert doc.line_of(()) == 2
    assert doc.where(("site", "zones", 1, "kind")) == f"{tmp_path / 'c.yaml'}:11"


def test_where_without_any_line_is_just_the_file() -> None:
    assert YamlDocument("x.yaml", {}, {}).where(("a",)) == "x.yaml"


def test_format_loc_reads_like_the_file() -> None:
    assert format_loc(("devices", 3, "zones", 0, "polygon")) == "devices[3].zones[0].polygon"
    assert format_loc(("site", "id")) == "site.id"
    assert format_loc((0, "id")) == "[0].id"
    assert format_loc(()) == "(document)"


# --- syntax and structure -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: 1\nb: 2\nc: d: e\n", 3, "mapping values are not allowed"),
        ("a: 1\nb: [1, 2\nc: 3\n", 3, "expected ',' or ']'"),
        ("a: 1\nb: 2\n\tc: 3\n", 3, "cannot start any token"),
        ("a: 1\nb: *nope\n", 2, "undefined alias"),
        ("a: 1\n---\nb: 2\n", 2, "another document"),
    ],
)
def test_yaml_syntax_error_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line}: YAML syntax: "), problem
    assert fragment in problem


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  id: a\n  name: x\n  id: b\ndevices: []\n")
    assert problems_of(path) == [f"{path}:4: duplicate key 'id'"]


def test_duplicate_keys_in_a_flow_mapping_and_at_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, "a: {x: 1, y: 2, x: 3}\n")
    assert problems_of(path) == [f"{path}:1: duplicate key 'x'"]
    path = write(tmp_path, "devices: []\nsite: {}\n\ndevices: [1]\n", "top.yaml")
    assert problems_of(path) == [f"{path}:4: duplicate key 'devices'"]


def test_keys_that_collide_after_typing_are_duplicates(tmp_path: Path) -> None:
    # YAML 1.1: `1` and `true` are the same key for a Python dict
    path = write(tmp_path, "1: a\ntrue: b\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: duplicate key ")


def _alias_bomb(levels: int = 9, fanout: int = 10) -> str:
    names = [f"l{i}" for i in range(levels + 1)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * fanout) + "]"]
    for previous, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_quickly_without_expanding(tmp_path: Path) -> None:
    # 10 ** 10 strings if expanded; the file itself is under 1 KiB
    path = write(tmp_path, _alias_bomb())
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    problems = problems_of(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"alias bomb took {elapsed:.2f} s to refuse"
    [problem] = problems
    assert re.match(rf"{re.escape(str(path))}:\d+: ", problem), problem
    assert "alias bomb" in problem

    tracemalloc.start()
    try:
        problems_of(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB while refusing an alias bomb"


def test_reusing_an_anchor_a_few_times_is_fine(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "poly: &p [[0, 0], [1, 0], [1, 1]]\na: *p\nb: *p\n"))
    assert doc.data["a"] == doc.data["b"] == [[0, 0], [1, 0], [1, 1]]


@pytest.mark.parametrize("text", ["&a [*a]\n", "a: &a {x: *a}\n"])
def test_self_referencing_alias_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: ")
    assert f"nesting deeper than {MAX_DEPTH} levels" in problem


def test_200_deep_block_nesting_is_refused(tmp_path: Path) -> None:
    text = "".join("  " * level + f"k{level}:\n" for level in range(200)) + "  " * 200 + "x: 1\n"
    path = write(tmp_path, text)
    [problem] = problems_of(path)
    assert re.match(
        rf"{re.escape(str(path))}:\d+: nesting deeper than {MAX_DEPTH} levels$", problem
    )
    # the line is where the limit was crossed, deep inside the file
    assert int(problem.split(":")[-2]) > MAX_DEPTH


def test_200_deep_flow_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a: " + "[" * 200 + "]" * 200 + "\n")
    [problem] = problems_of(path)
    assert problem == f"{path}:1: nesting deeper than {MAX_DEPTH} levels"


def test_nesting_just_under_the_limit_loads(tmp_path: Path) -> None:
    depth = MAX_DEPTH - 1
    doc = load_yaml(write(tmp_path, "[" * depth + "1" + "]" * depth + "\n"))
    value = doc.data
    for _ in range(depth):
        value = value[0]
    assert value == 1


def test_very_deep_flow_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a: " + "[" * 2000 + "]" * 2000 + "\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: ")


def test_merge_keys_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    text = "base: &base\n  kind: gps\n  crs: gcj02\ndevice:\n  id: gps-1\n  <<: *base\n"
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:6: merge keys (<<) are not supported; write keys out",
    ]


def test_a_quoted_merge_key_is_only_a_string(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "'<<': 1\n"))
    assert doc.data == {"<<": 1}


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: 1\nb: !!python/object:os.system echo\n", 2, "cannot read value"),
        ("a: 1\nb: !custom thing\n", 2, "cannot read value"),
        ("a: 1\nb: !!binary '@@@@'\nc: 3\n", None, None),  # lenient base64: loads
        ("a: 1\n[x, y]: 2\n", 2, "expected a plain value here"),
        ("a: 1\n? {x: 1}\n: 2\n", 2, "expected a plain value here"),
        ("a: 1\n2001-12-14: 2\n", 2, "mapping keys must be plain scalars"),
    ],
)
def test_tags_and_complex_keys(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    path = write(tmp_path, text)
    if line is None:
        load_yaml(path)
        return
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line}: "), problem
    assert fragment in problem


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: !!int abc\n",
        "a: 1\nb: !!int ''\n",
        "a: 1\nb: !!float abc\n",
        "a: 1\nb: !!bool maybe\n",
        "a: 1\nb: !!timestamp yesterday\n",
        "a: 1\n!!int x: 2\n",
    ],
)
def test_malformed_tagged_scalar_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    try:
        load_yaml(path)
    except ConfigError as exc:
        assert exc.problems[0].startswith(f"{path}:2: ")
    else:
        pytest.fail("a malformed tagged scalar loaded")


# --- files that are not YAML text -----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"site:\n  name: \xff\xfe broken\n",
        "site:\n  name: 老王水果店\n".encode("gbk"),
        "site: {id: x}\n".encode("utf-16"),
    ],
    ids=["invalid-bytes", "gbk", "utf-16"],
)
def test_non_utf8_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: not UTF-8 text (byte ")


def test_utf8_with_bom_and_chinese_text_loads(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "\ufeffsite:\n  name: 演示街区\n"))
    assert doc.data == {"site": {"name": "演示街区"}}
    assert doc.lines[("site", "name")] == 2


def test_control_characters_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nb: \x07\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: ")
    assert "U+0007" in problem


def test_control_character_problem_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\nb: \x07\n")
    [problem] = problems_of(path)
    assert "\n" not in problem
    assert problem.startswith(f"{path}:2: ")


def test_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    # valid YAML, only too big: the size check must come first
    line = "# " + "x" * 97 + "\n"
    content = "a: 1\n" + line * (MAX_FILE_BYTES // len(line) + 1)
    path = write(tmp_path, content)
    assert path.stat().st_size > MAX_FILE_BYTES
    [problem] = problems_of(path)
    assert problem == (
        f"{path}: file is {path.stat().st_size} bytes, over the {MAX_FILE_BYTES} limit"
    )


def test_file_at_the_size_limit_loads(tmp_path: Path) -> None:
    content = "a: 1\n#" + "x" * (MAX_FILE_BYTES - 7) + "\n"
    path = write(tmp_path, content)
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_yaml(path).data == {"a": 1}


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "# c\n---\n"])
def test_empty_file_is_an_empty_document(tmp_path: Path, content: str) -> None:
    doc = load_yaml(write(tmp_path, content))
    assert doc.data is None
    assert doc.line_of(("anything",)) is not None


def test_missing_file_and_directory_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [f"{missing}: cannot read: No such file or directory"]
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}: cannot read: ")


def test_directory_says_it_is_a_directory(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == [
        f"{tmp_path}: cannot read: it is a directory, not a regular file"
    ]


def test_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    # it used to read /dev/zero "to the end" before the size check: 24 GB, then the OOM killer
    path = tmp_path / "rules.yaml"
    path.symlink_to("/dev/zero")
    tracemalloc.start()
    started = time.monotonic()
    try:
        problems = problems_of(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == [f"{path}: cannot read: it is a character device, not a regular file"]
    assert time.monotonic() - started < 2
    assert peak < 1_000_000


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    # opening a FIFO for reading blocks until a writer comes: check and reload hung for ever
    path = tmp_path / "rules.yaml"
    os.mkfifo(path)
    assert problems_of(path) == [
        f"{path}: cannot read: it is a FIFO (named pipe), not a regular file"
    ]


@pytest.mark.timeout(20)
def test_a_file_swapped_for_a_fifo_after_the_type_check_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race between stat and open: opened non-blocking, then the descriptor is checked
    path = tmp_path / "rules.yaml"
    os.mkfifo(path)
    monkeypatch.setattr("ingest.yamlsource.not_regular", lambda p: None)
    assert problems_of(path) == [
        f"{path}: cannot read: it is a FIFO (named pipe), not a regular file"
    ]


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert problems_of(path) == [f"{path}: cannot read: it is a socket, not a regular file"]


def test_no_more_than_the_limit_is_read_whatever_the_size_says() -> None:
    # /proc files are regular files of size 0 with content: the read itself stops at limit + 1
    assert Path("/proc/self/status").stat().st_size == 0
    with pytest.raises(ConfigError) as info:
        read_config_bytes("/proc/self/status", limit=100)
    assert info.value.problems == ["/proc/self/status: file is more than 100 bytes, over the limit"]
    assert read_config_bytes("/proc/self/status").startswith(b"Name:")


def test_parse_yaml_accepts_text_and_bytes() -> None:
    assert parse_yaml("a: [1, 2]\n", "t").data == {"a": [1, 2]}
    assert parse_yaml(b"a: [1, 2]\n", "b").data == {"a": [1, 2]}
    assert parse_yaml("a: 1\n", "name-only").source == "name-only"


# --- pydantic errors as file:line lines ------------------------------------------------------


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int
    api_token: str | None = None
    label: str = ""


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[Item] = []


EXPLAINED = """\
name: demo
items:
  - port: 80
  - port: eighty
    api_tokne: x
  - port: 1
    api_token: 12345
    zzz: 1
  - port: [1, 2]
    label: 7
"""


def test_validation_errors_become_file_line_field_messages(tmp_path: Path) -> None:
    path = write(tmp_path, EXPLAINED)
    doc = load_yaml(path)
    with pytest.raises(ConfigError) as caught:
        validate(doc, Doc)
    problems = caught.value.problems
    assert str(caught.value) == "\n".join(problems)
    p = str(path)
    assert f"{p}:4: items[1].port: Input should be a valid integer" in "\n".join(problems)
    assert any(x.startswith(f"{p}:4: items[1].port: ") and "(got 'eighty')" in x for x in problems)
    assert f"{p}:5: items[1].api_tokne: unknown field 'api_tokne'; did you mean 'api_token'?" in (
        problems
    )
    assert f"{p}:8: items[2].zzz: unknown field 'zzz'; expected one of: api_token, label, port" in (
        problems
    )
    # a list input is not echoed; a short scalar is
    [port_list] = [x for x in problems if "items[3].port" in x]
    assert port_list.startswith(f"{p}:9: ") and "(got" not in port_list
    [label] = [x for x in problems if "items[3].label" in x]
    assert label == f"{p}:10: items[3].label: Input should be a valid string (got 7)"
    assert len(problems) == 6, problems


def test_values_of_secret_looking_fields_are_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nitems:\n  - port: 1\n    api_token: 987654321\n")
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(path), Doc)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:4: items[0].api_token: Input should be a valid string")
    assert "987654321" not in str(caught.value)


def test_long_inputs_are_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, f"name: demo\nitems:\n  - port: {'9x' * 60}\n")
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(path), Doc)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:3: items[0].port: ")
    assert "9x9x" not in problem


def test_missing_fields_point_at_their_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "# header\n\nitems:\n  - label: a\n")
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(path), Doc)
    assert caught.value.problems == [
        f"{path}:3: name: Field required",
        f"{path}:4: items[0].port: Field required",
    ]


def test_an_empty_document_validates_as_an_empty_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(path), Doc)
    assert caught.value.problems == [f"{path}:1: name: Field required"]


def test_a_non_mapping_document_is_one_problem_at_the_document(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError) as caught:
        validate(load_yaml(path), Doc)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:1: (document): Input should be a valid dictionary")


def test_config_error_is_a_value_error_with_its_problems() -> None:
    error = ConfigError(["a.yaml:1: x: bad", "a.yaml:2: y: worse"])
    assert isinstance(error, ValueError)
    assert str(error) == "a.yaml:1: x: bad\na.yaml:2: y: worse"


def test_keys_of_blanks_or_line_breaks_are_quoted_in_the_location(tmp_path: Path) -> None:
    """Found by the rule fuzz: a key of U+0085 (a line break) and spaces made the message
    `file:24:  : unknown field` — split across lines, with an invisible field name."""
    assert format_loc(["evidence", "\x85  ", 0]) == "evidence.'\\x85  '[0]"
    assert format_loc([" pad", "ok"]) == "' pad'.ok"
    assert format_loc(["devices", 0, "id"]) == "devices[0].id"
