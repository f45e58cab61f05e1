"""What a delivery to the case system carries, and what its acknowledgement records: the
reference body (case, manifest, signature, media references), the multipart upload, the
package's link in the hash chain, and the acknowledgement built from the case system's answer.
Pure functions of the package on disk and the answer; the outbox and transports are the feed's."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from evidence.cases import Case
from evidence.keys import key_id_of_b64
from evidence.ledger import Ledger
from evidence.package import MANIFEST, SIGNATURE

ACK_REF_FIELDS = ("id", "case_ref", "ref", "case_id", "ack_id")
"""Where a case system's answer may carry its own reference for the case, first found wins."""


def reference_body(
    case: Case,
    package: Path,
    manifest_bytes: bytes,
    signature: bytes,
    media_base_url: str | None = None,
) -> dict[str, Any]:
    """The JSON a case system gets when media stay on the box (HTTP `reference`, and MQTT).
    Each media entry says its role (clip, snapshot_raw:<moment>, snapshot:plate, ...), so a
    vehicle case's plate crop is found without reading the manifest."""
    manifest = json.loads(manifest_bytes)
    base = media_base_url or ""
    rel_pkg = relative_package(package)
    return {
        "case": case.to_dict(),
        "chain": chain_of(package, manifest_bytes),
        "manifest": manifest,
        "manifest_b64": base64.b64encode(manifest_bytes).decode(),
        "signature_b64": base64.b64encode(signature).decode(),
        "media": [
            {
                "path": f["path"],
                "role": f.get("role"),
                "sha256": f["sha256"],
                "size": f["size"],
                "ref": f"{rel_pkg}/{f['path']}",
                "url": f"{base.rstrip('/')}/{rel_pkg}/{f['path']}" if base else None,
            }
            for f in manifest["files"]
        ],
    }


def acknowledgement(chain: dict[str, Any], answer: Any, now: datetime) -> dict[str, Any]:
    """The case system took the case: when, which chain link, and its reference for it (an id
    it gave, or what it echoed). An echoed manifest hash that is not the one sent means the case
    system holds another manifest for this case: `echo.mismatch`."""
    ack: dict[str, Any] = {
        "acked_at": now.isoformat(),
        "chain": {"seq": chain["seq"], "manifest_sha256": chain["manifest_sha256"]},
        "ack_ref": None,
    }
    if not isinstance(answer, dict):
        return ack
    ref = next((answer[k] for k in ACK_REF_FIELDS if answer.get(k) not in (None, "")), None)
    ack["ack_ref"] = None if ref is None else str(ref)[:200]
    echoed = answer.get("manifest_sha256")
    if echoed is None and isinstance(answer.get("chain"), dict):
        echoed = answer["chain"].get("manifest_sha256")
    if echoed is not None:
        ack["echo"] = {"manifest_sha256": str(echoed)[:128]}
        if echoed != chain["manifest_sha256"]:
            ack["echo"]["mismatch"] = True
    return ack


def chain_of(package: Path, manifest_bytes: bytes) -> dict[str, Any]:
    """The package's link in the box's hash chain, and the box's ledger head as it is now:
    what the case system keeps to notice, later, a chain that lost or rewrote its tail."""
    manifest = json.loads(manifest_bytes)
    signer = manifest.get("signer") or {}
    try:
        key_id: str | None = key_id_of_b64(signer["public_key"])
    except (KeyError, TypeError, ValueError):
        key_id = signer.get("key_id")
    try:
        head = Ledger.read_head(package.parent.parent)
    except (OSError, ValueError, KeyError):
        head = None
    return {
        "seq": manifest.get("seq"),
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "prev_manifest_sha256": manifest.get("prev_manifest_sha256"),
        "key_id": key_id,
        "box_head": None
        if head is None
        else {"seq": head.seq, "manifest_sha256": head.manifest_sha256},
    }


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def relative_package(package: Path) -> str:
    return f"{package.parent.name}/{package.name}"


def multipart(
    case: Case, package: Path, manifest_bytes: bytes, signature: bytes
) -> tuple[bytes, str]:
    boundary = f"streetwatch-{secrets.token_hex(12)}"
    parts: list[bytes] = []

    def part(name: str, data: bytes, content_type: str, filename: str | None = None) -> None:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )

    part("case", json.dumps(case.to_dict()).encode(), "application/json")
    part("chain", json.dumps(chain_of(package, manifest_bytes)).encode(), "application/json")
    part(MANIFEST, manifest_bytes, "application/json", MANIFEST)
    part(SIGNATURE, signature, "application/octet-stream", SIGNATURE)
    for entry in json.loads(manifest_bytes)["files"]:
        data = (package / entry["path"]).read_bytes()
        part("file", data, content_type(entry["path"]), entry["path"])
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def content_type(path: str) -> str:
    for suffix, kind in (
        (".mp4", "video/mp4"),
        (".jpg", "image/jpeg"),
        (".png", "image/png"),
        (".geojson", "application/geo+json"),
        (".json", "application/json"),
    ):
        if path.endswith(suffix):
            return kind
    return "application/octet-stream"
