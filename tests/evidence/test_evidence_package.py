"""Packages from real footage (vtest.avi) and real journal readings."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from evidence.blur import BlurUnavailable, blur_bystanders, load_detector
from evidence.builder import EvidenceBuilder
from evidence.keys import Signer, Verifier
from evidence.package import GENESIS, manifest_bytes
from evidence.verify import verify_chain
from ingest.config import EvidenceBlur
from ingest.coords import gcj02_to_wgs84
from ingest.journal import Journal
from tests.evidence.evidence_support import fill_journal, make_violation, site_config

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def builder(tmp_path: Path, ring):
    config = site_config(tmp_path)
    journal = Journal(tmp_path / "journal.sqlite")
    fill_journal(journal, START, 60)
    signer = Signer.load_or_create(tmp_path / "key.pem")
    yield EvidenceBuilder(config, signer, ring, journal)
    journal.close()


def _probe(ffprobe: str, clip: Path) -> dict:
    out = subprocess.run(
        [
            ffprobe, "-v", "error", "-count_frames", "-show_entries",
            "stream=codec_name,pix_fmt,width,height,nb_read_frames:format=format_name,duration",
            "-of", "json", str(clip),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_package_from_real_footage(builder: EvidenceBuilder, ring, ffprobe: str) -> None:
    violation = make_violation(START, devices=("cam-1", "mag-1", "truck-1"))
    path = builder.build(violation)

    assert path.parent.name == "2026-11-23"
    assert path.name == f"20261123-{violation.violation_id}"
    manifest = json.loads((path / "manifest.json").read_bytes())
    signature = (path / "manifest.sig").read_bytes()
    assert Verifier(builder.signer.verifier.public_key).verify(
        signature, (path / "manifest.json").read_bytes()
    )
    assert manifest["seq"] == 1 and manifest["prev_manifest_sha256"] == GENESIS
    assert (path / "manifest.json").read_bytes() == manifest_bytes(manifest)

    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {
        "manifest.json",
        "manifest.sig",
    }
    assert set(listed) == on_disk
    for rel, entry in listed.items():
        data = (path / rel).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)

    # the clip: H.264 in MP4 covering pre-roll to post-roll, as ffprobe sees it
    probe = _probe(ffprobe, path / "media/cam-1/clip.mp4")
    stream = probe["streams"][0]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] in ("yuvj420p", "yuv420p")
    assert (stream["width"], stream["height"]) == (768, 576)
    expected = ring.frames_between(
        "cam-1",
        violation.window_start - timedelta(seconds=3),
        violation.window_end + timedelta(seconds=2),
    )
    assert int(stream["nb_read_frames"]) == len(expected) == manifest["media"]["cam-1"]["frames"]
    span = (expected[-1].ts - expected[0].ts).total_seconds()
    assert abs(float(probe["format"]["duration"]) - span) < 0.25

    # snapshots: raw copies are the camera's own JPEG bytes; annotated ones differ
    snaps = manifest["media"]["cam-1"]["snapshots"]
    assert set(snaps) == {"first_seen", "confirmed", "latest"}
    by_index = {f.index: f for f in ring.frames}
    for name, info in snaps.items():
        raw = (path / f"media/cam-1/{name}.raw.jpg").read_bytes()
        assert raw == by_index[info["frame_index"]].jpeg
        annotated = cv2.imdecode(
            np.frombuffer((path / f"media/cam-1/{name}.annotated.jpg").read_bytes(), np.uint8),
            cv2.IMREAD_COLOR,
        )
        original = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        assert annotated.shape == original.shape
        # the banner (device, UTC and site time) is burned into the top rows
        assert np.abs(annotated[:20].astype(int) - original[:20].astype(int)).mean() > 20
        assert info["at"]["utc"].endswith("+00:00") and info["at"]["site"].endswith("+08:00")
    assert snaps["confirmed"]["at"]["utc"].startswith(
        violation.opened_at.astimezone(UTC).isoformat()[:19]
    )

    # place, party, rule and times
    loc = manifest["location"]
    assert loc["wgs84"] == {"lon": 121.4373, "lat": 31.1952}
    assert loc["device_crs"]["crs"] == "wgs84"
    assert manifest["party"]["id"] == "m-0001" and manifest["party"]["licence_no"]
    assert manifest["rule"]["thresholds"] == {"min_dwell_s": 4.0, "zone_kinds": ["shopfront"]}
    assert manifest["category"] == "市容管理/跨门经营"
    window = manifest["time_window"]
    assert window["opened_at"]["site"].endswith("+08:00")
    assert window["deadline"]["utc"] == (violation.deadline.isoformat())
    assert [d["id"] for d in manifest["devices"]] == ["cam-1", "mag-1", "truck-1"]

    # sensor series and GPS track from the journal
    series = json.loads((path / "data/sensor_series.json").read_bytes())["series"]
    field = series["mag-1"]["field_ut"]
    assert field and all(set(s) == {"ts", "x", "y", "z", "magnitude"} for s in field)
    assert {s["occupied"] for s in series["mag-1"]["occupancy"]} == {True, False}
    track = json.loads((path / "data/gps_track.geojson").read_bytes())
    assert track["type"] == "FeatureCollection"
    line = next(f for f in track["features"] if f["geometry"]["type"] == "LineString")
    assert line["properties"]["device_id"] == "truck-1"
    assert len(line["geometry"]["coordinates"]) == line["properties"]["points"] > 10
    points = [f for f in track["features"] if f["geometry"]["type"] == "Point"]
    assert len(points) == line["properties"]["points"]
    assert all(p["properties"]["ts"]["site"].endswith("+08:00") for p in points)


def test_device_crs_and_unknown_party(tmp_path: Path, ring) -> None:
    config = site_config(tmp_path)
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "k.pem"), ring, None)
    violation = make_violation(START, devices=("truck-1",))
    violation = type(violation)(**{**_fields(violation), "party": "m-9999"})
    manifest = json.loads((builder.build(violation) / "manifest.json").read_bytes())
    device = manifest["location"]["device_crs"]
    assert device["crs"] == "gcj02"
    # GCJ-02 shifts Shanghai by some hundred metres; converting back lands on WGS-84
    assert abs(device["lon"] - 121.4373) > 0.001
    lat, lon = gcj02_to_wgs84(device["lat"], device["lon"])
    assert abs(lat - 31.1952) < 1e-7 and abs(lon - 121.4373) < 1e-7
    assert manifest["party"] == {"id": "m-9999", "known": False}
    assert manifest["media"] == {}


def _fields(violation) -> dict:
    return {name: getattr(violation, name) for name in violation.__dataclass_fields__}


def test_chain_idempotence_and_staging_cleanup(builder: EvidenceBuilder) -> None:
    first = builder.build_result(make_violation(START, 0))
    second = builder.build_result(make_violation(START, 1))
    again = builder.build_result(make_violation(START, 0))
    assert (first.seq, second.seq) == (1, 2)
    assert again.created is False and again.path == first.path
    m2 = json.loads((second.path / "manifest.json").read_bytes())
    assert m2["prev_manifest_sha256"] == first.manifest_sha256
    assert not list((builder.root / ".staging").iterdir())
    report = verify_chain(builder.root, builder.signer.verifier)
    assert report.ok and report.packages == 2, report.findings
    assert builder.stats["packages_built"] == 2


def test_missing_frames_are_recorded_not_fatal(tmp_path: Path, ring) -> None:
    config = site_config(tmp_path)
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "k.pem"), ring, None)
    late = make_violation(START + timedelta(hours=1))
    manifest = json.loads((builder.build(late) / "manifest.json").read_bytes())
    assert manifest["problems"] == ["cam-1: no frames in the ring buffer"]
    assert builder.stats["packages_without_frames"] == 1


def test_blur_bystanders_only_in_annotated_copy(tmp_path: Path, ring) -> None:
    image = cv2.imdecode(np.frombuffer(ring.frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    faces = [(300, 100, 40, 40), (110, 340, 30, 30)]
    blurred, n = blur_bystanders(image, lambda _img: faces, [(100.0, 320.0, 180.0, 560.0)])
    assert n == 1  # the face inside the subject's own box is not a bystander's
    assert not np.array_equal(blurred[100:140, 300:340], image[100:140, 300:340])
    assert np.array_equal(blurred[340:370, 110:140], image[340:370, 110:140])

    config = site_config(tmp_path)
    builder = EvidenceBuilder(
        config,
        Signer.load_or_create(tmp_path / "k.pem"),
        ring,
        None,
        face_detector=lambda _img: [(300, 100, 40, 40)],
    )
    path = builder.build(make_violation(START))
    raw = (path / "media/cam-1/confirmed.raw.jpg").read_bytes()
    info = json.loads((path / "manifest.json").read_bytes())["media"]["cam-1"]["snapshots"]
    assert raw == next(f.jpeg for f in ring.frames if f.index == info["confirmed"]["frame_index"])
    assert info["confirmed"]["faces_blurred"] is True
    assert builder.stats["faces_blurred"] == 3


def test_load_detector_without_a_named_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BlurUnavailable, match=r"evidence\.blur\.model"):
        load_detector(EvidenceBlur(enabled=True))
    with pytest.raises(BlurUnavailable, match="does not exist"):
        load_detector(EvidenceBlur(enabled=True, model=tmp_path / "nope.onnx"))


def test_package_files_are_not_world_writable(builder: EvidenceBuilder) -> None:
    path = builder.build(make_violation(START))
    for file in path.rglob("*"):
        if file.is_file():
            assert not stat.S_IMODE(file.stat().st_mode) & 0o022


def test_undecodable_frame_is_skipped_and_counted(tmp_path: Path, ring, ffprobe: str) -> None:
    from tests.evidence.evidence_support import VideoRing

    frames = list(ring.frames[:80])
    broken = frames[50]
    # frame 50 (5.0 s) is in the clip and is the frame of the first sighting
    frames[50] = type(broken)(
        broken.device_id, broken.index, broken.ts, broken.width, broken.height, b"not a jpeg"
    )
    bad_ring = VideoRing("cam-1", frames)
    config = site_config(tmp_path)
    builder = EvidenceBuilder(config, Signer.load_or_create(tmp_path / "k.pem"), bad_ring, None)
    path = builder.build(make_violation(START, dwell_s=2.0, pre_s=1.0, post_s=1.0))
    media = json.loads((path / "manifest.json").read_bytes())["media"]["cam-1"]
    clip = media["clip"]
    assert clip["frames_skipped"] == 1
    assert media["snapshots"]["first_seen"]["frame_index"] in (49, 51)
    probe = _probe(ffprobe, path / "media/cam-1/clip.mp4")
    assert int(probe["streams"][0]["nb_read_frames"]) == clip["frames"]


def test_only_the_series_there_are(builder: EvidenceBuilder) -> None:
    path = builder.build(make_violation(START, devices=("mag-1",)))
    files = {f["path"] for f in json.loads((path / "manifest.json").read_bytes())["files"]}
    assert files == {"data/violation.json", "data/sensor_series.json"}
