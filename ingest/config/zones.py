"""Merchants and zones: the polygons that observations are checked against."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ValidationInfo, field_validator, model_validator

from ingest.config.common import SafeId, Strict
from ingest.config.geometry import Point, _check_lonlat, _check_polygon


class Merchant(Strict):
    id: SafeId
    name: str
    licence_no: str
    address: str = ""
    contact: str = ""
    grade: Literal["A", "B", "C"] | None = None
    """The shop's grade in the street's three-level management (三级分级管理): A (good
    standing) to C (watched closely); rules may depend on it (`when: {merchant_grade: [C]}`)."""
    shopfront: list[Point]
    """The shop's frontage as a WGS-84 [lon, lat] polygon (the door line and what lies in front)."""

    @field_validator("shopfront")
    @classmethod
    def _polygon(cls, value: list[Point]) -> list[Point]:
        _check_lonlat(value)
        return _check_polygon(value, "shopfront")


class ZoneKind(StrEnum):
    SHOPFRONT = "shopfront"
    NO_PARKING = "no_parking"
    FIRE_LANE = "fire_lane"
    SIDEWALK = "sidewalk"
    RESTRICTED = "restricted"
    GEOFENCE = "geofence"


class Zone(Strict):
    id: SafeId
    kind: ZoneKind
    polygon: list[Point]
    """Pixel [x, y] for cameras; WGS-84 [lon, lat] for GPS and drone geofences."""
    merchant: SafeId | None = None

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, value: list[Point], info: ValidationInfo) -> list[Point]:
        zone = info.data.get("id")
        return _check_polygon(value, f"zone {zone!r} polygon" if zone else "zone polygon")

    @model_validator(mode="after")
    def _merchant(self) -> Zone:
        if self.kind is ZoneKind.SHOPFRONT and self.merchant is None:
            raise ValueError("a shopfront zone names its merchant (merchant: <merchant id>)")
        return self
