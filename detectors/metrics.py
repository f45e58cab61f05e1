"""Environment and facility sensors: each metric sample becomes a `metric` observation.

No state here: thresholds, dwell, hysteresis and silence are the rules' business (they differ
per rule, see rules.thresholds). The observation carries what the rules and the evidence need:
the metric, its value and unit, and what the sensor watches (`facility`: bin, toilet, ...).
"""

from __future__ import annotations

from datetime import datetime

from detectors.observation import GeoPoint, Observation, ObservationKind
from ingest.config import Device
from ingest.readings import Metric


def metric_observation(device: Device, ts: datetime, sample: Metric) -> Observation:
    location = device.location
    return Observation(
        kind=ObservationKind.METRIC,
        device_id=device.id,
        subject=sample.name,
        subject_id=sample.name,
        first_seen=ts,
        last_seen=ts,
        location=None if location is None else GeoPoint(location.lon, location.lat),
        attributes={
            "metric": sample.name,
            "value": sample.value,
            "unit": sample.unit,
            "facility": device.facility or "sensor",
        },
    )
