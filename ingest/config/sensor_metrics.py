"""What a `kind: sensor` device measures: `metrics: {fill_pct: {unit: "%", min: 0, max: 100}}`.

The names are the keys of the device's JSON messages, of the rules' `threshold: {metric: ...}`
and of the rows of the metrics table; the range is what a working sensor can report (a value
outside it is a dead letter, not a reading).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from ingest.config.common import Finite, Strict

_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _metric_name(value: str) -> str:
    if value == "ts" or not _METRIC_NAME.fullmatch(value):
        raise ValueError(
            f"metric name {value!r}: 1-48 lower-case letters, digits or '_', starting with a "
            "letter (and not 'ts'), e.g. fill_pct, nh3_ppm, noise_dba"
        )
    return value


MetricName = Annotated[str, AfterValidator(_metric_name)]


class MetricSpec(Strict):
    unit: str = Field("", max_length=16)
    """Shown with the value in evidence and plots: "%", "ppm", "µg/m³", "dB(A)", "m"."""
    min: Finite | None = None
    """Lowest value a working sensor reports; below it the message is a dead letter."""
    max: Finite | None = None
    """Highest value a working sensor reports."""

    @model_validator(mode="after")
    def _range(self) -> MetricSpec:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min:g} must be below max {self.max:g}")
        return self


Metrics = dict[MetricName, MetricSpec]
