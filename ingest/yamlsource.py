"""Load operator-written YAML with the position of every value, safely.

Config errors must name file, line and field, so the loader keeps a map from each value's path
(keys and list indices) to its line. It walks PyYAML's node graph itself instead of calling
`safe_load`, which also bounds alias expansion ("billion laughs") and nesting depth.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64


class ConfigError(ValueError):
    """A config file that cannot be used. Each line of `problems` reads `file:line: field: why`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class YamlDocument:
    source: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """Line of the deepest existing value on `path` (pydantic locations may go deeper)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def where(self, path: Iterable[str | int]) -> str:
        line = self.line_of(path)
        return f"{self.source}:{line}" if line is not None else self.source


class _Walker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}
        self.nodes = 0
        self.scalars = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, why: str) -> ConfigError:
        return ConfigError([f"{self.source}:{node.start_mark.line + 1}: {why}"])

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"document expands to more than {MAX_NODES} values (alias bomb?)")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, "merge keys (<<) are not supported; write keys out")
                key = self.scalar(key_node)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise self.fail(key_node, "mapping keys must be plain scalars")
                if key in result:
                    raise self.fail(key_node, f"duplicate key {key!r}")
                result[key] = self.build(value_node, (*path, key), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*path, index), depth + 1) for index, item in enumerate(node.value)
            ]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a plain value here")
        try:
            return self.scalars.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            raise self.fail(node, f"cannot read value: {exc.problem}") from None
        except Exception as exc:  # SafeConstructor raises plain errors on bad tagged values
            raise self.fail(node, f"cannot read {node.tag} value {node.value!r}: {exc}") from None


def load_yaml(path: str | Path) -> YamlDocument:
    path = Path(path)
    return parse_yaml(read_config_bytes(path), str(path))


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_type(mode: int) -> str:
    """What a non-regular file is, in words: `a directory`, `a FIFO (named pipe)`, ..."""
    return next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")


def not_regular(path: str | Path) -> str | None:
    """Why `path` (symlinks followed) cannot be read as a config file, without opening it:
    None for a regular file, else e.g. `it is a FIFO (named pipe), not a regular file`."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return str(exc.strerror or exc)
    return None if stat.S_ISREG(mode) else f"it is {file_type(mode)}, not a regular file"


def read_config_bytes(path: str | Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a config or rule file, never more than `limit`.

    Only a regular file is opened (symlinks followed): a FIFO would block the reader forever and
    /dev/zero never ends. The type is checked before opening and again on the open descriptor
    (opened non-blocking), so a file swapped for a FIFO in between cannot block either; at most
    `limit + 1` bytes are read whatever the file claims its size is.
    """
    source = str(path)
    why = not_regular(path)
    if why is not None:
        raise ConfigError([f"{source}: cannot read: {why}"])
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            why = f"it is {file_type(info.st_mode)}, not a regular file"
            raise ConfigError([f"{source}: cannot read: {why}"])
        if info.st_size > limit:
            raise ConfigError([f"{source}: file is {info.st_size} bytes, over the {limit} limit"])
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError([f"{source}: file is more than {limit} bytes, over the limit"])
    return b"".join(chunks)


def parse_yaml(raw: bytes | str, source: str) -> YamlDocument:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text (byte {exc.start})"]) from None
    too_deep = _line_too_deep(text)
    if too_deep is not None:
        raise ConfigError([f"{source}:{too_deep}: nesting deeper than {MAX_DEPTH} levels"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError([f"{source}: nesting too deep to read"]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise ConfigError(
            [f"{source}:{line}: character U+{code:04X} is not allowed in YAML"]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{source}{line}: YAML syntax: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: YAML: {exc}"]) from None
    if node is None:
        return YamlDocument(source, None, {(): 1})
    walker = _Walker(source)
    data = walker.build(node, (), 0)
    return YamlDocument(source, data, walker.lines)


def _line_too_deep(text: str) -> int | None:
    """Line where bracket nesting passes MAX_DEPTH, found before PyYAML's recursive composer
    can overflow the stack on it (brackets inside strings count too; that errs on the safe side)."""
    depth, line = 0, 1
    for char in text:
        if char == "\n":
            line += 1
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return None


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not text or not text.isprintable() or text != text.strip():
            text = repr(text)  # a key of spaces or control characters stays visible, one line
        out += f".{text}" if out else text
    return out or "(document)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union-branch and validator tags, which are not part of the file."""
    return tuple(
        p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "tagged-union"))
    )


def explain(doc: YamlDocument, error: ValidationError, model: type[BaseModel]) -> ConfigError:
    problems = []
    for item in error.errors(include_url=False):
        loc = _clean_loc(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            known = _known_fields(model, loc[:-1], doc.data)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif known:
                message += f"; expected one of: {', '.join(sorted(known))}"
        elif item["type"] != "missing" and item.get("input") is not None and not _secret(loc):
            shown = repr(item["input"])
            if len(shown) <= 80 and not isinstance(item["input"], dict | list):
                message += f" (got {shown})"
        owner = _owner(doc.data, loc)
        if owner is not None and repr(owner[1]) not in message:
            message += f" (in {owner[0]} {owner[1]!r})"
        problems.append(f"{doc.where(loc)}: {format_loc(loc)}: {message}")
    return ConfigError(problems)


_OWNERS = {"zones": "zone", "merchants": "merchant"}
"""Lists whose items have an `id` and a polygon: an error in the polygon names its owner, not
only the owner's index."""
_SHAPES = ("polygon", "shopfront")


def _owner(data: Any, loc: tuple[str | int, ...]) -> tuple[str, str] | None:
    """The innermost zone or merchant with a string id whose polygon `loc` points into."""
    if not any(part in _SHAPES for part in loc):
        return None
    found = None
    node = data
    for index, part in enumerate(loc):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        parent = loc[index - 1] if index else None
        if (
            isinstance(part, int)
            and parent in _OWNERS
            and isinstance(node, dict)
            and isinstance(node.get("id"), str)
            and index + 1 < len(loc)
            and loc[index + 1] != "id"
        ):
            found = (_OWNERS[str(parent)], node["id"])
    return found


def _secret(loc: tuple[str | int, ...]) -> bool:
    """Never echo what might be a secret back into a log."""
    return any(word in str(part).lower() for part in loc for word in _SECRET_WORDS)


_SECRET_WORDS = ("password", "passwd", "secret", "token", "username", "key", "url", "dsn")
"""`url` too: a URL may carry user:password@, and the error must not repeat it."""


def _known_fields(model: type[BaseModel], loc: tuple[str | int, ...], data: Any) -> list[str]:
    """Field names (and aliases) valid at `loc`, for a did-you-mean hint."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate(doc: YamlDocument, model: type[BaseModel], **context: Any) -> Any:
    try:
        return model.model_validate(doc.data if doc.data is not None else {}, context=context)
    except ValidationError as exc:
        raise explain(doc, exc, model) from None
