"""Checks of rules against the site (devices.yaml): names that must exist, and what needs the
whole rule (a merchant party needs shop-front zones)."""

from __future__ import annotations

from typing import Any

from ingest.config import SiteConfig, ZoneKind
from ingest.yamlsource import YamlDocument
from rules.fields import unknown
from rules.model import KNOWN_SUBJECTS, Clause, Party, Rule


def known_subjects(config: SiteConfig) -> list[str] | None:
    """Subjects a rule may name on this site; None when a camera reports its model's own class
    names (a `detect` without `classes`), which cannot be known before the model loads."""
    known = list(KNOWN_SUBJECTS)
    known += [d.facility for d in config.devices if d.facility and d.facility not in known]
    for device in config.devices:
        detect = getattr(device, "detect", None)
        if detect is None:
            continue
        if not detect.classes:
            return None
        known += [s for s in detect.classes.values() if s not in known]
    return known


def known_zones(config: SiteConfig) -> dict[str, str | None]:
    """Zone id -> kind: every device's zones, every geomagnetic sensor's bay, and every
    sweeper's road segment (the zone of its coverage observations)."""
    zones: dict[str, str | None] = {}
    for device in config.devices:
        for zone in device.zones:
            zones[zone.id] = zone.kind.value
        if device.bay:
            kind = getattr(device, "bay_kind", None)
            zones.setdefault(device.bay, None if kind is None else str(kind.value))
        for segment in device.sweeping.segments if device.sweeping else ():
            zones.setdefault(segment.id, None)
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


Loc = tuple[str | int, ...]


def clauses_of(rule: Rule) -> list[tuple[Loc, Clause]]:
    """Each clause of the rule's condition with its location in the rule."""
    condition = rule.condition
    if condition.kind is not None:
        return [(("condition",), condition.clauses()[0])]
    key = "all" if condition.all is not None else "any"
    return [(("condition", key, i), c) for i, c in enumerate(condition.clauses())]


def cross_check(rule: Rule, config: SiteConfig) -> list[tuple[Loc, str]]:
    """What needs the whole rule: each clause must match something on the site (see
    `reach_checks`); party merchant needs shop-front zones only."""
    zones = known_zones(config)
    problems = reach_checks(rule, config)
    clauses = clauses_of(rule)
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


NEVER = "so the rule can never fire"


def reach_checks(rule: Rule, config: SiteConfig) -> list[tuple[Loc, str]]:
    """A clause whose zone, zone_kind and device together match no zone of the site can never
    fire: a zone kind no device has (`zone_kind: geofence` on a site without geofences), or
    zones and kinds and devices that exclude each other. Zones are per device (a camera's
    zones, a GPS device's zones, a geomagnetic sensor's bay). A disabled rule is not checked,
    so a rule kept for later (or a catalog rule for kinds a small site lacks) can stay in the
    folder with `enabled: false`. Unknown zone and device ids are `name_checks`' to report."""
    if not rule.enabled:
        return []
    places = [(d.id, zone.id, zone.kind.value) for d in config.devices for zone in d.zones]
    places += [
        (d.id, d.bay, None if d.bay_kind is None else d.bay_kind.value)
        for d in config.devices
        if d.bay
    ]
    places += [
        (d.id, seg.id, None) for d in config.devices if d.sweeping for seg in d.sweeping.segments
    ]
    zone_ids = {zone for _, zone, _ in places}
    device_ids = {d.id for d in config.devices}
    kinds_there = sorted({kind for _, _, kind in places if kind})
    problems: list[tuple[Loc, str]] = []
    for loc, clause in clauses_of(rule):
        if not (clause.zone or clause.zone_kind):
            continue  # any zone (or none): a device alone is checked by name
        if not (set(clause.zone) <= zone_ids and set(clause.device) <= device_ids):
            continue  # an unknown name, already reported where it is written

        def fits(device: str, zone: str, kind: str | None, c: Clause = clause) -> bool:
            return (
                (not c.device or device in c.device)
                and (not c.zone or zone in c.zone)
                and (not c.zone_kind or kind in c.zone_kind)
            )

        if any(fits(*place) for place in places):
            continue
        wanted = " or ".join(repr(k) for k in clause.zone_kind)
        if clause.zone_kind and not any(kind in clause.zone_kind for _, _, kind in places):
            there = ", ".join(kinds_there) or "none"
            why = f"no zone of kind {wanted} in devices.yaml, {NEVER}; zone kinds there: {there}"
            problems.append(((*loc, "zone_kind"), why))
        elif clause.zone_kind and clause.zone:
            named = ", ".join(
                f"{zone} is {kind or 'a bay without bay_kind'}"
                for _, zone, kind in places
                if zone in clause.zone
            )
            why = f"none of the zones named in zone is of kind {wanted} ({named}), {NEVER}"
            problems.append(((*loc, "zone_kind"), why))
        elif clause.zone_kind:
            own = sorted({k for d, _, k in places if d in clause.device and k})
            whose = ", ".join(clause.device)
            why = (
                f"device {whose} has no zone of kind {wanted} "
                f"(its zone kinds: {', '.join(own) or 'none'}), {NEVER}"
            )
            problems.append(((*loc, "zone_kind"), why))
        else:
            owners = ", ".join(f"{zone} is {d}'s" for d, zone, _ in places if zone in clause.zone)
            why = (
                f"no zone named in zone belongs to device {', '.join(clause.device)} "
                f"({owners}), {NEVER}"
            )
            problems.append(((*loc, "zone"), why))
    return problems
