"""A camera's PRESENCE Observations of zone visits: the subject, how many of its kind share the
zone, where it stands, and the best frame of the visit so far (kept after its track ends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from detectors.camera_state import TrackState, VisitLog
from detectors.drone_locator import DroneLocator
from detectors.homography import Homography
from detectors.leftobject import ID_BASE as LEFT_ID_BASE
from detectors.observation import GeoPoint, Observation, ObservationKind
from detectors.stalls import STALL_ID_BASE
from detectors.zones import PixelZones, Visit, footprint
from ingest.config import Device


def subject_id(track_id: int) -> str:
    """`t7` for a detector's track, `o3` for a left object, `s2` for a stall."""
    if track_id >= STALL_ID_BASE:
        return f"s{track_id - STALL_ID_BASE}"
    if track_id >= LEFT_ID_BASE:
        return f"o{track_id - LEFT_ID_BASE}"
    return f"t{track_id}"


class VisitObservations:
    """Builds the Observations of one camera's visits and remembers, per open visit, when it
    was last reported and its best frame."""

    def __init__(
        self,
        device: Device,
        homography: Homography | None,
        ground: DroneLocator | None,
        track: Callable[[int], TrackState | None],
    ) -> None:
        self.device = device
        self.homography = homography
        self.ground = ground
        self.track = track
        """The live track (detector's, left object or stall) of an id, if any."""
        self.visits: dict[tuple[int, str], VisitLog] = {}

    def observe(
        self, visit: Visit, state: str, last_seen: datetime, zones: PixelZones
    ) -> Observation:
        key = (visit.track_id, visit.zone.id)
        track = self.track(visit.track_id)
        log_ = self.visits.get(key)
        best = log_.best if log_ is not None else None
        if track is not None and (best is None or track.best.confidence >= best.confidence):
            best = track.best
        subject = track.subject if track is not None else log_.subject if log_ else "unknown"
        if state == "exit":
            self.visits.pop(key, None)
        elif best is not None:
            self.visits[key] = VisitLog(last_seen, best, subject)
        box = track.box if track is not None else best.box if best is not None else None
        count = sum(
            1
            for v in zones.in_zone(visit.zone.id)
            if (other := self.track(v.track_id)) is not None and other.subject == subject
        )
        return Observation(
            kind=ObservationKind.PRESENCE,
            device_id=self.device.id,
            subject=subject,
            subject_id=subject_id(visit.track_id),
            first_seen=visit.entered,
            last_seen=max(last_seen, visit.entered),
            zone_id=visit.zone.id,
            zone_kind=visit.zone.kind.value,
            state=state,
            count=count,
            location=self.ground.location(visit.track_id) if self.ground else self._locate(box),
            frame=best,
            attributes={
                "track_id": visit.track_id,
                "stationary": bool(track is not None and track.carried),
                **({"placed": True, "stationary": True} if visit.track_id >= LEFT_ID_BASE else {}),
                **({"merchant": visit.zone.merchant} if visit.zone.merchant else {}),
                **(self.ground.attributes(visit.track_id) if self.ground else {}),
            },
        )

    def inside(self, zones: PixelZones, interval: timedelta) -> list[Observation]:
        """`inside` Observations of the open visits last reported `interval` ago or longer."""
        observations = []
        for visit in list(zones.visits.values()):
            log_ = self.visits.get((visit.track_id, visit.zone.id))
            if log_ is not None and visit.last_inside - log_.last_emit >= interval:
                observations.append(self.observe(visit, "inside", visit.last_inside, zones))
        return observations

    def _locate(self, box: tuple[float, float, float, float] | None) -> GeoPoint | None:
        if self.homography is not None and box is not None:
            lon, lat = self.homography.to_lonlat(*footprint(box))
            return GeoPoint(float(lon), float(lat))
        location = self.device.location
        return GeoPoint(location.lon, location.lat) if location is not None else None
