"""The site description, `devices.yaml`: schema, loading and cross-checks.

Validated once at start-up; every error names file, line and field. Secrets never live in the
file: the broker credentials are the *names* of environment variables.

One module per section: `site` (the whole file, `site`, `ingest`, `storage`, load_config),
`broker`, `devices`, `detection` (per-device detector settings), `zones`, `evidence` and
`timeseries`; `common` and `geometry` hold what they share. Everything is importable from here.
"""

from __future__ import annotations

from ingest.config.broker import Broker, Partition, Reconnect, Tls
from ingest.config.camera_extras import LeftObject, Tiling
from ingest.config.common import SAFE_ID, Finite, SafeId, Strict, topic_matches
from ingest.config.console import Console
from ingest.config.detection import (
    CameraDetect,
    GeomagSettings,
    GpsFilters,
    HomographyPair,
    MotionGate,
    Route,
)
from ingest.config.devices import (
    FORMATS,
    STREAMS_OF_KIND,
    VIDEO_PUSH,
    Crs,
    Device,
    DeviceKind,
    Location,
)
from ingest.config.evidence import (
    Evidence,
    EvidenceBlur,
    EvidenceFeed,
    EvidenceHttpFeed,
    EvidenceMqttFeed,
    EvidencePlates,
)
from ingest.config.geometry import MAX_PIXEL, Coordinate, Point
from ingest.config.site import Ingest, Site, SiteConfig, Storage, load_config
from ingest.config.timeseries import Timeseries
from ingest.config.zones import Merchant, Zone, ZoneKind
from ingest.readings import Stream
from ingest.yamlsource import ConfigError

__all__ = [
    "FORMATS",
    "MAX_PIXEL",
    "SAFE_ID",
    "STREAMS_OF_KIND",
    "VIDEO_PUSH",
    "Broker",
    "CameraDetect",
    "ConfigError",
    "Console",
    "Coordinate",
    "Crs",
    "Device",
    "DeviceKind",
    "Evidence",
    "EvidenceBlur",
    "EvidenceFeed",
    "EvidenceHttpFeed",
    "EvidenceMqttFeed",
    "EvidencePlates",
    "Finite",
    "GeomagSettings",
    "GpsFilters",
    "HomographyPair",
    "Ingest",
    "LeftObject",
    "Location",
    "Merchant",
    "MotionGate",
    "Partition",
    "Point",
    "Reconnect",
    "Route",
    "SafeId",
    "Site",
    "SiteConfig",
    "Storage",
    "Stream",
    "Strict",
    "Tiling",
    "Timeseries",
    "Tls",
    "Zone",
    "ZoneKind",
    "load_config",
    "topic_matches",
]
