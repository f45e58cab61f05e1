"""Round-trip edits of devices.yaml: one device's `zones` list replaced, every other byte kept.

ruamel.yaml reads the file with the line and column of every node, and renders the new zones;
the file itself is never re-dumped (a full round-trip dump still re-indents and re-wraps what
the operator wrote). Instead the lines of the old list are spliced out and the new ones in, so
comments, key order, quoting and layout outside the list stay byte for byte. Inside it, a zone
the editor left unchanged keeps its own lines too (with its comments).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

ZONE_KEYS = ("id", "kind", "merchant", "polygon")
"""The order a new zone's keys are written in (as the shipped devices.yaml writes them)."""


class EditError(ValueError):
    """The file cannot be edited this way (not YAML, no such device, an unusual layout)."""


def version_of(raw: bytes) -> str:
    """The version an editor saves against: the SHA-256 of the file's bytes."""
    return hashlib.sha256(raw).hexdigest()


def replace_zones(text: str, device_id: str, zones: Sequence[Mapping[str, Any]]) -> str:
    """`text` with the zones of device `device_id` replaced by `zones` (each with `id`, `kind`,
    `polygon` and optionally `merchant`). Only the lines of the old list change."""
    data = _load(text)
    devices = data.get("devices") if isinstance(data, CommentedMap) else None
    if not isinstance(devices, CommentedSeq):
        raise EditError("the file has no `devices:` list")
    index = next(
        (
            i
            for i, d in enumerate(devices)
            if isinstance(d, CommentedMap) and d.get("id") == device_id
        ),
        None,
    )
    if index is None:
        raise EditError(f"no device {device_id!r} in the file")
    device = devices[index]
    if device.fa.flow_style():
        raise EditError(f"{device_id} is written on one line ({{...}}); write it out as a block")
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    end = _content_end(lines, _next_line(data, devices, index, device, "zones", len(lines)))
    key_col = device.lc.key("id")[1] if "id" in device else device.lc.col
    dash = key_col + _sequence_offset(data, devices, lines)
    old = device.get("zones")
    if "zones" not in device:
        if not zones:
            return "".join(lines)
        block = [f"{' ' * key_col}zones:{newline}", *_render(zones, dash, newline)]
        return "".join([*lines[:end], *block, *lines[end:]])
    key_line = device.lc.key("zones")[0]
    if isinstance(old, CommentedSeq) and old and not old.fa.flow_style():
        first, dash = device.lc.value("zones")
        if first <= key_line or not lines[first][dash:].startswith("-"):
            raise EditError(f"{device_id}: zones are laid out in a way this editor cannot keep")
        if not zones:
            return "".join([*lines[:key_line], _empty_key(lines[key_line], newline), *lines[end:]])
        spans = _item_spans(old, lines, first, end)
        block = []
        for zone in zones:
            kept = next((span for item, span in spans if _same(item, zone)), None)
            block += lines[kept[0] : kept[1]] if kept else _render([zone], dash, newline)
        return "".join([*lines[:first], *block, *lines[end:]])
    # `zones: []`, `zones:` with nothing, or a flow list: written afresh in block style
    head = f"{' ' * key_col}zones:{' []' if not zones else ''}{newline}"
    return "".join([*lines[:key_line], head, *_render(zones, dash, newline), *lines[end:]])


def _load(text: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except YAMLError as exc:
        raise EditError(f"not readable as YAML: {exc}") from None


def _next_line(
    data: CommentedMap, devices: CommentedSeq, index: int, device: CommentedMap, key: str, eof: int
) -> int:
    """The line where whatever follows `device[key]` begins: the device's next key, the next
    device, the next top-level section, or the end of the file."""
    keys = list(device.keys())
    if key in device and keys.index(key) + 1 < len(keys):
        return int(device.lc.key(keys[keys.index(key) + 1])[0])
    if index + 1 < len(devices):
        return int(devices.lc.item(index + 1)[0])
    top = list(data.keys())
    after = top.index("devices") + 1
    return int(data.lc.key(top[after])[0]) if after < len(top) else eof


def _content_end(lines: list[str], stop: int) -> int:
    """`stop` moved back over blank lines and comment lines: they belong to what follows."""
    end = stop
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def _sequence_offset(data: CommentedMap, devices: CommentedSeq, lines: list[str]) -> int:
    """How far this file indents a list's dashes past their key (2 in the shipped file, 0 in
    what PyYAML writes): a new zones list follows the same style."""
    key_col = int(data.lc.key("devices")[1])
    line, col = devices.lc.item(0)
    dash = lines[line].rfind("-", 0, col)
    return max(0, dash - key_col) if dash >= 0 else 2


def _item_spans(
    seq: CommentedSeq, lines: list[str], first: int, end: int
) -> list[tuple[Any, tuple[int, int]]]:
    """Each item of a block list with the lines it owns (up to the next item's dash)."""
    starts = [int(seq.lc.item(i)[0]) for i in range(len(seq))]
    starts[0] = first
    if any(not lines[s].lstrip().startswith("-") for s in starts):
        return []  # an item on its own line after a lone dash: not reused, written afresh
    bounds = [*starts[1:], end]
    return [(item, (s, e)) for item, s, e in zip(seq, starts, bounds, strict=True)]


def _same(item: Any, zone: Mapping[str, Any]) -> bool:
    """The file's zone `item` says exactly what the editor's `zone` says."""
    if not isinstance(item, Mapping) or set(item) - set(ZONE_KEYS):
        return False
    try:
        return _plain(item) == _plain(zone)
    except (TypeError, ValueError):
        return False


def _plain(zone: Mapping[str, Any]) -> tuple[Any, ...]:
    polygon = tuple((float(x), float(y)) for x, y in zone.get("polygon") or ())
    return (zone.get("id"), zone.get("kind"), zone.get("merchant"), polygon)


def _empty_key(line: str, newline: str) -> str:
    """`zones:` (with any comment after it) made `zones: []`."""
    body = line.rstrip("\r\n")
    colon = body.index("zones:") + len("zones:")
    return f"{body[:colon]} []{body[colon:]}{newline}"


def _number(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _render(zones: Sequence[Mapping[str, Any]], dash: int, newline: str) -> list[str]:
    """New zones as block-list lines with their dash at column `dash`, polygons on one line."""
    if not zones:
        return []
    items = CommentedSeq()
    for zone in zones:
        item = CommentedMap()
        for key in ZONE_KEYS:
            value = zone.get(key)
            if value is None:
                continue
            if key == "polygon":
                points = CommentedSeq()
                for x, y in value:
                    point = CommentedSeq([_number(x), _number(y)])
                    point.fa.set_flow_style()
                    points.append(point)
                points.fa.set_flow_style()
                value = points
            item[key] = value
        items.append(item)
    yaml = YAML(typ="rt")
    yaml.width = 1 << 16  # a polygon stays on one line
    yaml.indent(mapping=2, sequence=2, offset=0)
    out = io.StringIO()
    yaml.dump(items, out)
    return [f"{' ' * dash}{line}{newline}" for line in out.getvalue().splitlines()]


# ---- the file ------------------------------------------------------------------------------


def stage(path: Path, text: str) -> Path:
    """`text` written and fsynced to a new temporary file beside `path` (same folder, so
    relative paths in it resolve the same way, and the rename in `commit` is atomic), with
    `path`'s permissions. The caller validates it, then commits or discards it."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".edit", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit(tmp: Path, path: Path) -> None:
    """Rename the staged file over `path` and make the rename durable."""
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
