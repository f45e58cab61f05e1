"""Vehicle cases: the plate read at package time names the party, its crops are sealed.

The camera frames are a real photograph (a white car with a green new-energy plate, 苏ED51712,
read by a person off the enlarged photo) served as the camera's ring buffer of JPEG frames."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detectors.observation import FrameRef, Observation, ObservationKind
from evidence.builder import EvidenceBuilder
from evidence.cases import CaseStore
from evidence.keys import Signer
from evidence.payloads import content_type, multipart, reference_body
from evidence.plates import PlatesUnavailable
from evidence.service import EvidenceService
from evidence.verify import verify_chain
from ingest.config import SiteConfig, load_config
from ingest.frames import EncodedFrame
from rules.violation import EvidenceSpec, Violation
from tests.assets import shared_asset
from tests.evidence.evidence_support import VideoRing, site_dict

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CAR_BOX = (590.0, 330.0, 1890.0, 985.0)
"""The white car in plates/photos/hyperlpr-test_img.jpg (1920×1080)."""
PLATE = "苏ED51712"


def _config(tmp_path: Path, **plates: object) -> SiteConfig:
    data = site_dict(tmp_path, **({"plates": plates} if plates else {}))
    data["devices"].append(
        {
            "id": "cam-9",
            "kind": "camera",
            "location": {"lat": 31.1960, "lon": 121.4380},
            "zones": [
                {
                    "id": "no-park-1",
                    "kind": "no_parking",
                    "polygon": [[500.0, 300.0], [1919.0, 300.0], [1919.0, 1079.0], [500.0, 1079.0]],
                }
            ],
        }
    )
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_config(path)


def _ring(photo: str, seconds: float = 12.0, fps: float = 2.0) -> VideoRing:
    """The photo as a camera's ring buffer: the same JPEG (a PNG encoded as a camera would)."""
    path = shared_asset(f"plates/photos/{photo}")
    jpeg = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if path.suffix != ".jpg":
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    h, w = image.shape[:2]
    frames = [
        EncodedFrame("cam-9", i, START + timedelta(seconds=i / fps), w, h, jpeg)
        for i in range(int(seconds * fps))
    ]
    return VideoRing("cam-9", frames)


def _violation(box: tuple[float, float, float, float] = CAR_BOX, subject: str = "car") -> Violation:
    first = START + timedelta(seconds=2)
    observations = tuple(
        Observation(
            kind=ObservationKind.PRESENCE,
            device_id="cam-9",
            subject=subject,
            subject_id="31",
            first_seen=first,
            last_seen=first + timedelta(seconds=s),
            zone_id="no-park-1",
            zone_kind="no_parking",
            frame=FrameRef("cam-9", int((2 + s) * 2), first + timedelta(seconds=s), box, conf),
        )
        for s, conf in ((0.0, 0.6), (3.0, 0.9), (6.0, 0.7))
    )
    return Violation(
        rule_id="no-parking",
        rule_name="No parking",
        category="交通管理/违法停车",
        severity="normal",
        site_id="test-site",
        situation="no-parking/cam-9/31/no-park-1",
        opened_at=first + timedelta(seconds=3),
        window_start=first,
        window_end=first + timedelta(seconds=6),
        devices=("cam-9",),
        subject=subject,
        subject_id="31",
        zone_id="no-park-1",
        zone_kind="no_parking",
        evidence=EvidenceSpec(pre_s=1.0, post_s=1.0, sensor_series_s=0.0),
        thresholds={"min_dwell_s": 3.0},
        observations=observations,
    )


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_vehicle_case_names_its_plate(tmp_path: Path) -> None:
    shared_asset("models/plate_detect_hyperlpr3_640.onnx")
    config = _config(tmp_path)
    signer = Signer.load_or_create(tmp_path / "key.pem")
    ring = _ring("hyperlpr-test_img.jpg")
    builder = EvidenceBuilder(config, signer, ring, None, root=tmp_path / "evidence")
    store = CaseStore(tmp_path / "cases.sqlite")
    case = EvidenceService(builder, store).handle(_violation())
    package = builder.path_of(_violation())
    manifest_data = (package / "manifest.json").read_bytes()
    manifest = json.loads(manifest_data)

    party = manifest["party"]
    assert party["kind"] == "vehicle" and party["plate"] == PLATE
    assert party["plate_kind"] == "new_energy" and 0.8 <= party["plate_confidence"] <= 1.0
    assert builder.stats["plates_read"] == 1

    # read on the best frame (the most confident observation), inside the vehicle's box
    info = manifest["media"]["cam-9"]["plate"]
    assert info["read"] is True and info["plate"] == PLATE and info["frames_tried"] == 1
    assert info["frame_index"] == 10  # 5 s in: the observation seen with confidence 0.9
    x1, y1, x2, y2 = info["box"]
    assert CAR_BOX[0] <= x1 < x2 <= CAR_BOX[2] and CAR_BOX[1] <= y1 < y2 <= CAR_BOX[3]

    # both crops are listed and sealed; the raw one is the camera's own pixels
    roles = {f["role"]: f for f in manifest["files"]}
    raw_entry, rect_entry = roles["snapshot_raw:plate"], roles["snapshot:plate"]
    assert raw_entry["path"] == "media/cam-9/plate.raw.png"
    assert rect_entry["path"] == "media/cam-9/plate.rectified.png"
    raw = _decode((package / raw_entry["path"]).read_bytes())
    left, top, right, bottom = info["raw_box"]
    frame = _decode(ring.frames[info["frame_index"]].jpeg)
    assert np.array_equal(raw, frame[top:bottom, left:right])
    assert left <= x1 and top <= y1 and right >= x2 and bottom >= y2
    rectified = _decode((package / rect_entry["path"]).read_bytes())
    assert rectified.shape[1] > rectified.shape[0] > 20  # squared up, wider than tall

    report = verify_chain(tmp_path / "evidence", signer.verifier)
    assert report.ok, [str(f) for f in report.findings]

    # what the case system receives: the party in the manifest, the crops by role and type
    signature = (package / "manifest.sig").read_bytes()
    body = reference_body(case, package, manifest_data, signature)
    assert body["manifest"]["party"] == party
    media = {m["role"]: m for m in body["media"]}
    assert media["snapshot_raw:plate"]["ref"].endswith("/media/cam-9/plate.raw.png")
    assert content_type(media["snapshot:plate"]["path"]) == "image/png"
    upload, kind = multipart(case, package, manifest_data, signature)
    assert kind.startswith("multipart/form-data")
    assert b'filename="media/cam-9/plate.raw.png"' in upload
    store.close()


def test_no_plate_detector_means_no_plate_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ring = _ring("hyperlpr-test_img.jpg", seconds=10.0, fps=1.0)
    (tmp_path / "no-assets").mkdir()
    monkeypatch.setenv("STREETWATCH_ASSETS", str(tmp_path / "no-assets"))
    signer = Signer.load_or_create(tmp_path / "key.pem")
    with caplog.at_level(logging.INFO, logger="evidence.plates"):
        builder = EvidenceBuilder(_config(tmp_path), signer, ring, None, root=tmp_path / "ev")
    notes = [r.getMessage() for r in caplog.records if r.name == "evidence.plates"]
    assert len(notes) == 1 and notes[0].startswith("plate reading off")
    path = builder.build(_violation())
    manifest = json.loads((path / "manifest.json").read_bytes())
    assert manifest["party"] == {
        "kind": "vehicle",
        "plate": None,
        "plate_confidence": None,
        "plate_kind": None,
    }
    assert "plate" not in manifest["media"]["cam-9"]
    assert not any(f["role"].endswith(":plate") for f in manifest["files"])
    assert verify_chain(tmp_path / "ev", signer.verifier).ok


def test_a_vehicle_without_a_readable_plate(tmp_path: Path) -> None:
    """A truck from behind: the detector finds its 危险品 sign, which is no plate."""
    shared_asset("models/plate_detect_hyperlpr3_640.onnx")
    ring = _ring("tmp8F1F.png", seconds=10.0, fps=1.0)
    signer = Signer.load_or_create(tmp_path / "key.pem")
    builder = EvidenceBuilder(_config(tmp_path), signer, ring, None, root=tmp_path / "ev")
    truck = (200.0, 300.0, 705.0, 890.0)
    path = builder.build(_violation(truck, subject="truck"))
    manifest = json.loads((path / "manifest.json").read_bytes())
    assert manifest["party"]["kind"] == "vehicle" and manifest["party"]["plate"] is None
    assert manifest["media"]["cam-9"]["plate"] == {"read": False, "frames_tried": 3}
    assert builder.stats["plates_unread"] == 1


def test_plate_settings(tmp_path: Path) -> None:
    with pytest.raises(PlatesUnavailable, match="does not exist"):
        EvidenceBuilder(
            _config(tmp_path, detector=str(tmp_path / "nope.onnx")),
            Signer.load_or_create(tmp_path / "key.pem"),
            None,
            None,
        )
    off = _config(tmp_path, enabled=False, subjects=["car"], zone_kinds=["fire_lane"])
    assert off.evidence.plates.zone_kinds == ("fire_lane",)
    builder = EvidenceBuilder(off, Signer.load_or_create(tmp_path / "key.pem"), None, None)
    assert not builder.plates.active
    assert not builder.plates.applies(_violation())  # no_parking is not listed here
