"""A drone's telemetry track: the pose at a frame's time, interpolated, held or refused."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from detectors.groundproj import NotPlaced
from detectors.telemetry_track import TelemetryTrack
from ingest.readings import DroneTelemetry

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def sample(lat=31.0, lon=121.0, alt=40.0, heading=10.0, pitch=-30.0) -> DroneTelemetry:
    return DroneTelemetry(lat, lon, alt, heading, pitch)


def test_interpolates_between_the_samples_around_the_frame() -> None:
    track = TelemetryTrack(1.0)
    track.add(at(1.0), sample(lat=31.001, alt=50.0, heading=20.0, pitch=-40.0))
    track.add(at(0.0), sample())  # out of order: sorted in
    pose = track.pose_at(at(0.25))
    assert pose.lat == pytest.approx(31.00025) and pose.alt_m == pytest.approx(42.5)
    assert pose.heading_deg == pytest.approx(12.5) and pose.pitch_deg == pytest.approx(-32.5)
    assert track.pose_at(at(1.0)).alt_m == 50.0


def test_heading_interpolates_along_the_shorter_arc() -> None:
    track = TelemetryTrack(1.0)
    track.add(at(0.0), sample(heading=350.0))
    track.add(at(1.0), sample(heading=10.0))
    assert track.pose_at(at(0.75)).heading_deg == pytest.approx(5.0)
    assert track.pose_at(at(0.25)).heading_deg == pytest.approx(355.0)


def test_holds_the_nearest_sample_within_the_staleness_and_refuses_beyond() -> None:
    track = TelemetryTrack(1.0)
    with pytest.raises(NotPlaced) as refused:
        track.pose_at(at(0.0))
    assert refused.value.reason == "no_telemetry"
    track.add(at(0.0), sample(alt=30.0))
    assert track.pose_at(at(0.9)).alt_m == 30.0
    assert track.pose_at(at(-0.9)).alt_m == 30.0
    with pytest.raises(NotPlaced) as refused:
        track.pose_at(at(1.5))
    assert refused.value.reason == "stale_telemetry" and "1.5 s" in str(refused.value)
    # a gap longer than twice the staleness is not bridged; its middle is refused
    track.add(at(5.0), sample(alt=60.0))
    with pytest.raises(NotPlaced):
        track.pose_at(at(2.5))
    assert track.pose_at(at(4.5)).alt_m == 60.0
    assert track.stats["refused_stale_telemetry"] == 2
    assert track.stats["refused_no_telemetry"] == 1


def test_missing_attitude_is_refused_unless_the_mount_is_fixed() -> None:
    track = TelemetryTrack(1.0)
    track.add(at(0.0), DroneTelemetry(31.0, 121.0, 40.0, None, -30.0))
    with pytest.raises(NotPlaced, match="no_heading"):
        track.pose_at(at(0.0))
    track = TelemetryTrack(1.0)
    track.add(at(0.0), DroneTelemetry(31.0, 121.0, 40.0, 90.0, None))
    with pytest.raises(NotPlaced, match="no_pitch"):
        track.pose_at(at(0.0))
    fixed = TelemetryTrack(1.0, fixed_pitch_deg=-90.0, roll_deg=2.0)
    fixed.add(at(0.0), DroneTelemetry(31.0, 121.0, 40.0, 90.0, None))
    pose = fixed.pose_at(at(0.0))
    assert (pose.pitch_deg, pose.roll_deg) == (-90.0, 2.0)


def test_redelivered_samples_replace_and_old_ones_are_dropped() -> None:
    track = TelemetryTrack(1.0, keep_s=10.0)
    track.add(at(0.0), sample(alt=30.0))
    track.add(at(0.0), sample(alt=31.0))
    assert len(track) == 1 and track.pose_at(at(0.0)).alt_m == 31.0
    for s in range(1, 21):
        track.add(at(float(s)), sample())
    assert len(track) == 11  # 10 s behind the newest, both ends included
    with pytest.raises(NotPlaced):
        track.pose_at(at(5.0))


def test_feeding_and_asking_from_two_threads() -> None:
    track = TelemetryTrack(1.0, keep_s=1000.0)
    track.add(at(0.0), sample())
    errors: list[BaseException] = []

    def feed() -> None:
        for i in range(1, 2001):
            track.add(at(i * 0.1), sample(alt=40.0 + i * 0.01))

    def ask() -> None:
        try:
            for i in range(2000):
                pose = track.pose_at(at(0.0 + (i % 10) * 0.01))
                assert 40.0 <= pose.alt_m <= 41.0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=feed), threading.Thread(target=ask)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(track) == 2001
