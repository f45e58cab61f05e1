"""The sensor-metric block of an evidence package: the series around the episode as data
(`data/metric_series.json`) and as a small plot per metric (`media/<device>/<metric>.png`).

The plot is for a person reading the case: the metric and its unit, the values over local time,
the threshold and clear levels as lines, the episode shaded (from the crossing, or from the
last message of a silent sensor, to the moment the case opened or cleared). Matplotlib's Agg
backend draws it off screen; the same data always gives the same bytes (no timestamps in the
PNG), so a rebuilt package hashes the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from detectors.observation import Observation, ObservationKind
from ingest.readings import Metric, Reading

PLOT_SIZE_IN = (6.4, 3.0)
PLOT_DPI = 100


def _episodes(observations: Iterable[Observation]) -> dict[str, dict[str, Any]]:
    """device id -> the threshold episode the violation's observations show (last one wins)."""
    found: dict[str, dict[str, Any]] = {}
    for o in observations:
        if o.kind is not ObservationKind.METRIC or o.state is None:
            continue
        spec = o.attributes.get("threshold")
        if not isinstance(spec, dict):
            continue
        entry = found.setdefault(
            o.device_id, {"threshold": spec, "start": o.first_seen, "end": o.last_seen}
        )
        entry["start"] = min(entry["start"], o.first_seen)
        entry["end"] = max(entry["end"], o.last_seen)
        if o.state == "ok":
            entry["cleared"] = o.last_seen
    return found


def metric_series(
    readings: Sequence[Reading],
    observations: Iterable[Observation],
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """One entry per (device, metric) with samples: its points, unit, and the episode and
    threshold when the violation is about that metric (or the device's silence)."""
    episodes = _episodes(observations)
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for r in readings:
        p = r.payload
        if not isinstance(p, Metric):
            continue
        entry = grouped.setdefault(
            (r.device_id, p.name),
            {"device_id": r.device_id, "metric": p.name, "unit": p.unit, "points": []},
        )
        entry["points"].append({"ts": r.event_ts.astimezone(UTC).isoformat(), "value": p.value})
    out: list[dict[str, Any]] = []
    for (device_id, metric), entry in sorted(grouped.items()):
        episode = episodes.get(device_id)
        if episode is not None:
            spec = episode["threshold"]
            if spec.get("metric") in (None, metric):
                end = episode.get("cleared") or max(episode["end"], until or episode["end"])
                entry["threshold"] = spec
                entry["episode"] = {
                    "start": episode["start"].astimezone(UTC).isoformat(),
                    "end": end.astimezone(UTC).isoformat(),
                    "cleared": "cleared" in episode,
                }
        entry["points"].sort(key=lambda point: point["ts"])
        out.append(entry)
    return out


def plot_png(entry: dict[str, Any], tz: tzinfo, title: str = "") -> bytes:
    """A small PNG of one `metric_series` entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    times = [datetime.fromisoformat(p["ts"]).astimezone(tz) for p in entry["points"]]
    values = [p["value"] for p in entry["points"]]
    unit = entry.get("unit") or ""
    label = f"{entry['metric']} ({unit})" if unit else entry["metric"]
    fig = Figure(figsize=PLOT_SIZE_IN, dpi=PLOT_DPI)
    ax = fig.add_subplot()
    ax.plot(times, values, color="#1f4e79", linewidth=1.4, marker=".", markersize=3, label=label)
    spec = entry.get("threshold") or {}
    if "rate_per" not in spec and "silent_for" not in spec:
        for key, style, colour, name in (
            ("above", "--", "#c00000", "threshold"),
            ("below", "--", "#c00000", "threshold"),
            ("clear", ":", "#e08000", "clear level"),
        ):
            if key in spec:
                ax.axhline(
                    spec[key],
                    linestyle=style,
                    color=colour,
                    linewidth=1.2,
                    label=f"{name} {spec[key]:g} {unit}".rstrip(),
                )
    episode = entry.get("episode")
    if episode is not None:
        start = datetime.fromisoformat(episode["start"]).astimezone(tz)
        end = datetime.fromisoformat(episode["end"]).astimezone(tz)
        what = "silent" if "silent_for" in spec else "episode"
        if episode.get("cleared"):
            what += f", cleared {end:%H:%M}"
        ax.axvspan(start, max(end, start), color="#ffb3b3", alpha=0.45, label=what)
    ax.set_ylabel(label)
    ax.set_xlabel(f"local time ({_tz_name(tz, times)})")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.grid(True, linewidth=0.4, alpha=0.6)
    ax.set_title(title or f"{entry['device_id']}: {label}", fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _tz_name(tz: tzinfo, times: list[datetime]) -> str:
    if times:
        name = times[0].tzname()
        if name:
            return name
    return str(tz)


def metric_files(
    readings: Sequence[Reading],
    observations: Iterable[Observation],
    tz: tzinfo,
    until: datetime | None = None,
) -> list[tuple[str, bytes, str]]:
    """(relative path, bytes, role) of the block: the JSON series and one plot per metric that
    has at least one sample; empty when the readings hold no metric."""
    import json

    series = metric_series(readings, observations, until)
    if not series:
        return []
    files = [
        (
            "data/metric_series.json",
            json.dumps({"series": series}, ensure_ascii=False, indent=1).encode(),
            "metric_series",
        )
    ]
    for entry in series:
        rel = f"media/{entry['device_id']}/{entry['metric']}.png"
        files.append((rel, plot_png(entry, tz), "metric_plot"))
    return files
