"""Checks of rules against the site (devices.yaml): names that must exist, and what needs the
whole rule (a merchant party needs shop-front zones)."""

from __future__ import annotations

from typing import Any

from ingest.config import SiteConfig, ZoneKind
from ingest.yamlsource import YamlDocument
from rules.fields import unknown
from rules.model import KNOWN_SUBJECTS, Party, Rule


def known_subjects(config: SiteConfig) -> list[str] | None:
    """Subjects a rule may name on this site; None when a camera reports its model's own class
    names (a `detect` without `classes`), which cannot be known before the model loads."""
    known = list(KNOWN_SUBJECTS)
    for device in config.devices:
        detect = getattr(device, "detect", None)
        if detect is None:
            continue
        if not detect.classes:
            return None
        known += [s for s in detect.classes.values() if s not in known]
    return known


def known_zones(config: SiteConfig) -> dict[str, str | None]:
    """Zone id -> kind: every device's zones, and every geomagnetic sensor's bay."""
    zones: dict[str, str | None] = {}
    for device in config.devices:
        for zone in device.zones:
            zones[zone.id] = zone.kind.value
        if device.bay:
            kind = getattr(device, "bay_kind", None)
            zones.setdefault(device.bay, None if kind is None else str(kind.value))
    return zones


def name_checks(doc: YamlDocument, config: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Zones and devices named in the file must exist in devices.yaml. Runs on the raw data, so
    a wrong name is reported together with any other problem of the file."""
    zones = known_zones(config)
    devices = [d.id for d in config.devices]
    subjects = known_subjects(config)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
    if not isinstance(rules, list):
        return problems

    def names(where: tuple[str | int, ...], value: Any, known: list[str], what: str) -> None:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return
        for i, name in enumerate(items):
            if isinstance(name, str) and name not in known:
                loc = (*where, i) if not isinstance(value, str) else where
                problems.append((loc, unknown(what, name, known)))

    for index, rule in enumerate(rules):
        condition = rule.get("condition") if isinstance(rule, dict) else None
        if not isinstance(condition, dict):
            continue
        base: tuple[str | int, ...] = ("rules", index, "condition")
        clauses: list[tuple[tuple[str | int, ...], Any]] = [(base, condition)]
        for key in ("all", "any"):
            if isinstance(condition.get(key), list):
                clauses += [((*base, key, i), c) for i, c in enumerate(condition[key])]
        for where, clause in clauses:
            if isinstance(clause, dict):
                names((*where, "zone"), clause.get("zone"), list(zones), "zone")
                names((*where, "device"), clause.get("device"), devices, "device")
                if subjects is not None:
                    names((*where, "subject"), clause.get("subject"), subjects, "subject")
        places = condition.get("places")
        if isinstance(places, list):
            for p_index, group in enumerate(places):
                names((*base, "places", p_index), group, list(zones), "zone")
    return problems


def cross_check(rule: Rule, config: SiteConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """What needs the whole rule: party merchant needs shop-front zones only."""
    zones = known_zones(config)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    condition = rule.condition
    if condition.kind is not None:
        clauses = [(("condition",), condition.clauses()[0])]
    else:
        key = "all" if condition.all is not None else "any"
        clauses = [(("condition", key, i), c) for i, c in enumerate(condition.clauses())]
    if rule.party is Party.MERCHANT:
        shopfronts = {z for z, kind in zones.items() if kind == ZoneKind.SHOPFRONT.value}
        if not shopfronts:
            problems.append((("party",), "merchant needs shopfront zones in devices.yaml"))
        for _, clause in clauses:
            by_zone = bool(clause.zone) and set(clause.zone) <= shopfronts
            by_kind = clause.zone_kind == [ZoneKind.SHOPFRONT.value]
            if not (by_zone or by_kind):
                problems.append(
                    (
                        ("party",),
                        "merchant is the merchant of a shopfront zone, but the condition "
                        "matches other zones too; add zone_kind: shopfront (or name shopfront "
                        "zones)",
                    )
                )
                break
    return problems
