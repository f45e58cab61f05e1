"""A sweeper case's picture and figures: the day's track over every segment it had to cover.

For a violation whose observations include a `coverage` report (see detectors/coverage.py),
`coverage_evidence` reads the vehicle's fixes of that local day from the journal (through the
same fix filters the detector used, so a rejected outlier is not drawn as a spike), draws
them with each segment — covered ones green, short ones red, the case's own segment thickest,
each labelled with its passes — and returns the PNG with the figures as data.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from detectors.geofence import M_PER_DEG
from detectors.gps_filters import Candidate, FixFilter
from detectors.observation import Observation, ObservationKind
from ingest.config import GpsFilters, SiteConfig
from ingest.journal import Journal
from ingest.readings import GpsFix
from rules.violation import Violation

COVERED = "#2e7d32"
SHORT = "#d32f2f"
TRACK = "#546e7a"
_INSTALLED = {f.name for f in font_manager.fontManager.ttflist}
FONT = [
    name
    for name in ("DejaVu Sans", "Noto Sans CJK SC", "WenQuanYi Zen Hei")
    if name in _INSTALLED or name == "DejaVu Sans"
]
"""Latin first, then a CJK font for Chinese names where one is installed (Debian:
fonts-noto-cjk); without one those characters are drawn as boxes, nothing worse."""


@dataclass(frozen=True, slots=True)
class CoverageEvidence:
    png: bytes
    figures: dict[str, Any]


def coverage_report(v: Violation) -> Observation | None:
    """The violation's latest coverage report carrying the day's figures, if any."""
    return next(
        (
            o
            for o in reversed(v.observations)
            if o.kind is ObservationKind.COVERAGE and "segments" in o.attributes
        ),
        None,
    )


def coverage_evidence(
    v: Violation, config: SiteConfig, journal: Journal | None
) -> CoverageEvidence | None:
    """None when the violation is not about coverage, or its vehicle has no segments now."""
    report = coverage_report(v)
    if report is None:
        return None
    device = config.device(report.device_id)
    if device is None or device.sweeping is None:
        return None
    tz = config.site.tz
    day = date.fromisoformat(str(report.attributes["day"]))
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = min(start + timedelta(days=1), max(v.window_end, report.last_seen))
    track = _track(journal, device.id, device.filters or GpsFilters(), start, end)
    by_id = {s["id"]: s for s in report.attributes["segments"]}
    segments = []
    for segment in device.sweeping.segments:
        figure = by_id.get(segment.id, {})
        segments.append(
            {
                "id": segment.id,
                "name": segment.name,
                "passes": int(figure.get("passes", 0)),
                "required": int(figure.get("required", segment.passes)),
                "deadline": figure.get("deadline", ""),
                "covered": bool(figure.get("covered", False)),
                "line_wgs84": [list(p) for p in device.sweeping.line_wgs84(segment)],
                "buffer_m": device.sweeping.buffer_of(segment),
            }
        )
    figures = {
        "device_id": device.id,
        "device_name": device.name,
        "day": day.isoformat(),
        "timezone": config.site.timezone,
        "segment_id": report.subject_id,
        "state": report.state,
        "as_of": report.last_seen.astimezone(tz).isoformat(),
        "working_speed_kmh": list(device.sweeping.speed_kmh),
        "min_fraction": device.sweeping.min_fraction,
        "segments": segments,
        "covered": sum(s["covered"] for s in segments),
        "track": {
            "points": len(track),
            "first": track[0][0].astimezone(tz).isoformat() if track else None,
            "last": track[-1][0].astimezone(tz).isoformat() if track else None,
            "crs": "WGS-84",
        },
    }
    return CoverageEvidence(_plot(figures, track), figures)


def _track(
    journal: Journal | None, device_id: str, filters: GpsFilters, t0: datetime, t1: datetime
) -> list[tuple[datetime, float, float]]:
    if journal is None:
        return []
    check = FixFilter(filters)
    out = []
    for r in journal.readings_between([device_id], t0, t1):
        p = r.payload
        if not isinstance(p, GpsFix):
            continue
        fix = Candidate(
            r.event_ts, p.lat, p.lon, p.valid, p.hdop, p.sats, r.received_ts, r.time_flag
        )
        if check.check(fix) is None:
            out.append((r.event_ts, p.lon, p.lat))
    return out


def _plot(figures: dict[str, Any], track: list[tuple[datetime, float, float]]) -> bytes:
    # a bare Figure (no pyplot): its Agg canvas is private to this call, safe on any thread
    fig = Figure(figsize=(9.6, 7.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    lats = [p[1] for s in figures["segments"] for p in s["line_wgs84"]]
    lat0 = sum(lats) / len(lats)
    ax.set_aspect(1 / math.cos(math.radians(lat0)))
    if track:
        ax.plot(
            [p[1] for p in track], [p[2] for p in track], color=TRACK, lw=1.0, alpha=0.8,
            zorder=2,
        )  # fmt: skip
        ax.plot(track[0][1], track[0][2], "o", color=TRACK, ms=6, zorder=4)
        ax.plot(track[-1][1], track[-1][2], "s", color=TRACK, ms=6, zorder=4)
    for s in figures["segments"]:
        own = s["id"] == figures["segment_id"]
        colour = COVERED if s["covered"] else SHORT
        xs = [p[0] for p in s["line_wgs84"]]
        ys = [p[1] for p in s["line_wgs84"]]
        ax.plot(xs, ys, color=colour, lw=9 if own else 6, alpha=0.55, zorder=3,
                solid_capstyle="butt")  # fmt: skip
        deadline = s["deadline"][11:16] if s["deadline"] else "?"
        label = f"{s['id']}: {s['passes']}/{s['required']} by {deadline}"
        if s["name"]:
            label = f"{s['name']}\n{label}"
        mid = len(xs) // 2
        mx, my = (
            ((xs[mid - 1] + xs[mid]) / 2, (ys[mid - 1] + ys[mid]) / 2)
            if len(xs) % 2 == 0
            else (xs[mid], ys[mid])
        )
        ax.annotate(
            label, (mx, my), xytext=(0, 12), textcoords="offset points", ha="center",
            fontsize=9, fontweight="bold" if own else "normal", color=colour, zorder=5,
            fontfamily=FONT,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": colour, "alpha": 0.9},
        )  # fmt: skip
    ax.margins(0.12)
    metres = _scale_m(figures["segments"], lat0)
    ax.add_artist(
        AnchoredSizeBar(
            ax.transData, metres / (M_PER_DEG * math.cos(math.radians(lat0))), f"{metres:g} m",
            "lower left", pad=0.6, frameon=False, size_vertical=0, fontproperties={"size": 8},
        )
    )  # fmt: skip
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("longitude (WGS-84)")
    ax.set_ylabel("latitude (WGS-84)")
    ax.grid(True, lw=0.3, alpha=0.5)
    n = len(figures["segments"])
    ax.set_title(
        f"{figures['device_name'] or figures['device_id']} — {figures['day']}: "
        f"{figures['covered']}/{n} segments covered, as of {figures['as_of'][11:19]} "
        f"({figures['timezone']})",
        fontsize=10,
        fontfamily=FONT,
    )
    ax.legend(
        handles=[
            Line2D([], [], color=COVERED, lw=6, alpha=0.55, label="covered"),
            Line2D([], [], color=SHORT, lw=6, alpha=0.55, label="short of its passes"),
            Line2D([], [], color=TRACK, lw=1, label=f"track ({len(track)} fixes)"),
            Line2D([], [], color=TRACK, marker="o", ls="", label="first fix"),
            Line2D([], [], color=TRACK, marker="s", ls="", label="last fix"),
        ],
        loc="best", prop={"family": FONT, "size": 8}, framealpha=0.9,
    )  # fmt: skip
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _scale_m(segments: list[dict[str, Any]], lat0: float) -> float:
    """A round scale-bar length, about a fifth of the drawing's width."""
    lons = [p[0] for s in segments for p in s["line_wgs84"]]
    width = (max(lons) - min(lons)) * M_PER_DEG * math.cos(math.radians(lat0))
    for metres in (1000, 500, 200, 100, 50, 20, 10):
        if metres <= max(width, 10) / 4:
            return float(metres)
    return 10.0


__all__ = ["CoverageEvidence", "coverage_evidence", "coverage_report"]
