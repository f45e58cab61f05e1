"""Loading rule files: every file of a folder, validated, cross-checked against the site, each
problem as `file:line: field: why`."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.config import SiteConfig
from ingest.yamlsource import ConfigError, YamlDocument, format_loc, load_yaml, validate
from rules.model import LoadedRule, RuleFile, RuleSet
from rules.schedule import CompiledSchedule
from rules.sitecheck import cross_check, name_checks


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files of a folder (`*.yaml`, `*.yml`), or `rules_dir` itself when it is not a
    folder. Listing opens no file: an entry that is not a regular file (a FIFO, a link to
    /dev/zero) is listed, and reading it refuses it by name without opening it."""
    if not rules_dir.is_dir():
        return [rules_dir]
    return sorted(p for p in rules_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_rules(rules_dir: str | Path, config: SiteConfig) -> RuleSet:
    """Every `*.yaml`/`*.yml` in `rules_dir` (or one file), validated against `config`.

    Raises ConfigError listing every problem of every file as `file:line: field: why`.
    """
    rules_dir = Path(rules_dir)
    if not rules_dir.exists():
        raise ConfigError([f"{rules_dir}: no such rules folder or file"])
    problems: list[str] = []
    loaded: list[LoadedRule] = []
    files = rule_files(rules_dir)
    for path in files:
        try:
            loaded += _load_file(path, config)
        except ConfigError as exc:
            problems += exc.problems
    first: dict[str, str] = {}
    for item in loaded:
        where = f"{item.source}:{item.line}" if item.line else item.source
        if item.id in first:
            problems.append(f"{where}: id: rule id {item.id!r} also defined at {first[item.id]}")
        first.setdefault(item.id, where)
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(r for r in loaded if r.rule.enabled), tuple(str(p) for p in files))


def _load_file(path: Path, config: SiteConfig) -> list[LoadedRule]:
    doc = load_yaml(path)
    data = doc.data
    if data is None:
        return []
    if isinstance(data, dict) and "rules" not in data and "id" in data:
        doc = _rebase(doc)
    elif not isinstance(data, dict) or "rules" not in data:
        raise ConfigError(
            [
                f"{path}:1: expected one rule (a mapping with id, name, condition, ...) "
                "or a list of them under 'rules:'"
            ]
        )
    if isinstance(doc.data, dict) and doc.data.get("rules") is None:
        return []
    problems = [
        f"{doc.where(loc)}: {_display(doc, loc)}: {why}" for loc, why in name_checks(doc, config)
    ]
    try:
        parsed: RuleFile = validate(doc, RuleFile)
    except ConfigError as exc:
        found = exc.problems
        if getattr(doc, "single", False):
            found = [p.replace(": rules[0].", ": ", 1) for p in found]
        raise ConfigError(sorted(problems + found, key=_line_key)) from None
    out = []
    for index, rule in enumerate(parsed.rules):
        for loc, why in cross_check(rule, config):
            full = ("rules", index, *loc)
            problems.append(f"{doc.where(full)}: {_display(doc, full)}: {why}")
        places = {}
        for p_index, group in enumerate(rule.condition.places):
            for zone in group:
                places[zone] = p_index
        out.append(
            LoadedRule(
                rule=rule,
                source=str(path),
                line=doc.line_of(("rules", index)),
                schedule=CompiledSchedule.of(rule.schedule, config.site.tz),
                places=places,
            )
        )
    if problems:
        raise ConfigError(sorted(problems, key=_line_key))
    return out


def _line_key(problem: str) -> int:
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _rebase(doc: YamlDocument) -> YamlDocument:
    """A file holding one rule reads as `rules: [that rule]`; lines and locations stay right."""
    lines = {("rules", 0, *path): line for path, line in doc.lines.items()}
    lines[()] = 1
    rebased = YamlDocument(doc.source, {"rules": [doc.data]}, lines)
    rebased.single = True  # type: ignore[attr-defined]
    return rebased


def _display(doc: YamlDocument, loc: tuple[str | int, ...]) -> str:
    if getattr(doc, "single", False) and loc[:2] == ("rules", 0):
        loc = loc[2:]
    return format_loc(loc)
