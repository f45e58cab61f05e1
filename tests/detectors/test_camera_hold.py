"""OcclusionHold (detectors/camera_hold.py) on TrackStates: only still subjects of the held
kinds are held; a new track where a held one stood takes its id (whatever vehicle class the
model now calls it), one elsewhere does not; a carried still track absorbs a duplicate that
overlaps it closely; holds run out; an ended track's aliases go with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detectors.camera_hold import OcclusionHold
from detectors.camera_state import TrackState
from detectors.observation import FrameRef

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
VAN = (651.0, 42.0, 724.0, 99.0)


def track(track_id: int, subject: str, box=VAN, still_s: float = 10.0, **kw) -> TrackState:
    last = T0 + timedelta(seconds=20)
    state = TrackState(
        track_id, subject, 2, T0, last, box, 0.8, FrameRef("cam-1", 0, T0, box, 0.8), **kw
    )
    state.settle(box, last - timedelta(seconds=still_s))
    state.settle(box, last)  # the same place: still since then
    return state


def hold() -> OcclusionHold:
    return OcclusionHold(30.0, ["car", "truck", "van"])


def test_only_still_vehicles_are_held() -> None:
    h = hold()
    now = T0 + timedelta(seconds=23)
    assert h.keep(track(1, "car"), now)
    assert not h.keep(track(2, "person"), now)  # people walk away
    assert not h.keep(track(3, "car", still_s=1.0), now)  # it was driving
    assert not OcclusionHold(0.0, ["car"]).keep(track(4, "car"), now)  # off
    assert list(h.held) == [1]


def test_a_track_where_a_held_one_stood_takes_its_id() -> None:
    h, van = hold(), track(5, "car")
    tracks = {5: van}
    h.keep(van, T0 + timedelta(seconds=23))
    moved = (VAN[0] + 200, VAN[1], VAN[2] + 200, VAN[3])
    assert h.reclaim(90, "truck", moved, tracks) is None  # elsewhere
    assert h.reclaim(91, "person", VAN, tracks) is None  # not a held kind
    assert h.reclaim(92, "truck", (655.0, 45.0, 728.0, 100.0), tracks) == 5  # the van again
    assert h.identity(92) == 5 and not h.held
    h.release(5)
    assert h.identity(92) == 92


def test_a_carried_still_track_absorbs_a_close_duplicate_only() -> None:
    h, van = hold(), track(5, "car", carried=True)
    tracks = {5: van}
    assert h.reclaim(93, "car", (652.0, 43.0, 724.0, 99.0), tracks) == 5
    beside = (VAN[0] + 40, VAN[1], VAN[2] + 40, VAN[3])  # IoU about 0.29: a car next to it
    assert h.reclaim(94, "car", beside, tracks) is None
    van.carried = False  # detected itself this frame: a new track there is another car
    assert h.reclaim(95, "car", VAN, tracks) is None


def test_holds_run_out_and_a_revived_track_is_no_longer_held() -> None:
    h = hold()
    h.keep(track(1, "car"), T0 + timedelta(seconds=23))
    h.keep(track(2, "car"), T0 + timedelta(seconds=40))
    h.seen(2)  # the tracker found it again under its own id
    assert h.expired(T0 + timedelta(seconds=50)) == []
    assert h.expired(T0 + timedelta(seconds=54)) == [1]
    assert not h.held
