"""Environment and facility sensors (`kind: sensor`): `{ts, <metric>: number, ...}`.

Each metric the device declares in devices.yaml (`metrics: {fill_pct: {unit: "%", min: 0,
max: 100}}`) may appear in a message; each present one becomes a reading of its own, in the
order of the message. A metric the device does not declare, or a value outside its declared
min/max, sends the whole message to the dead letters with the reason: a sensor that reports
something unexpected is misconfigured or broken, and half of its message is not evidence.
"""

from __future__ import annotations

from ingest.decoders.base import DecodeContext, DecodeError, Reason
from ingest.decoders.fields import as_number, device_time, json_object, make_reading
from ingest.readings import Metric, Reading

_NOT_METRICS = frozenset({"ts"})


def _bound(value: float | None, none: str) -> str:
    return none if value is None else f"{value:g}"


def decode_metrics_json(ctx: DecodeContext, payload: bytes) -> list[Reading]:
    """`{ts, fill_pct: 93.5, nh3_ppm: 1.2, ...}` for the metrics the device declares."""
    obj = json_object(payload)
    declared = ctx.metrics or {}
    samples: list[Metric] = []
    for name, raw in obj.items():
        if name in _NOT_METRICS:
            continue
        spec = declared.get(name)
        if spec is None:
            known = ", ".join(sorted(declared)) or "none"
            raise DecodeError(
                Reason.UNKNOWN_METRIC,
                f"device {ctx.device_id} declares no metric {name!r} (it declares: {known})",
            )
        value = as_number(raw, name)
        low, high = spec.min, spec.max
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"[{_bound(low, '-inf')}, {_bound(high, 'inf')}]"
            raise DecodeError(
                Reason.OUT_OF_RANGE,
                f"{name}={value!r} {spec.unit} is outside its declared range {span}".replace(
                    "  ", " "
                ),
            )
        samples.append(Metric(name, value, spec.unit))
    if not samples:
        raise DecodeError(
            Reason.MISSING_FIELD,
            f"no metric in the message (device {ctx.device_id} declares: "
            f"{', '.join(sorted(declared)) or 'none'})",
        )
    device_ts, flag = device_time(ctx, obj)
    return [
        make_reading(ctx, payload, index, device_ts, flag, sample)
        for index, sample in enumerate(samples)
    ]
