"""Recordings: what a live run saw, as JSON lines, for `streetwatch rules replay`.

One JSON object per line, in the order the pipeline handled them:

    {"type": "header", "format": "streetwatch-recording", "version": 1, "site": "demo-street",
     "started_at": "2026-11-23T02:00:00+00:00"}
    {"type": "reading", "reading": {"key": ..., "device_id": ..., "stream": "geomag",
     "kind": "geomag_field", "device_ts": "...", "received_ts": "...", "time_flag": "ok",
     "payload": {"x": 33.1, "y": -3.0, "z": 35.2}}}
    {"type": "observation", "observation": <Observation.to_dict()>}

Times are ISO 8601 UTC. Snapshot readings keep width and height but not the JPEG bytes (a replay
re-runs rules, not cameras). A line that cannot be read (a run killed mid-write leaves a
truncated last line) is reported with its line number and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from detectors.observation import Observation
from ingest.readings import PAYLOAD_KINDS, Reading, Stream, TimeFlag

FORMAT = "streetwatch-recording"
VERSION = 1


class RecordingError(ValueError):
    """A recording that cannot be read; the message reads `file:line: why`."""


def reading_to_dict(reading: Reading) -> dict[str, Any]:
    return {
        "key": reading.key,
        "device_id": reading.device_id,
        "stream": reading.stream.value,
        "kind": reading.kind,
        "device_ts": None if reading.device_ts is None else _iso(reading.device_ts),
        "received_ts": _iso(reading.received_ts),
        "time_flag": reading.time_flag.value,
        "payload": reading.payload_dict(),
    }


def reading_from_dict(data: dict[str, Any]) -> Reading:
    kind = data["kind"]
    if kind not in PAYLOAD_KINDS:
        raise ValueError(f"unknown reading kind {kind!r}")
    fields = dict(data.get("payload") or {})
    if kind == "snapshot":
        fields["jpeg"] = b""
    device_ts = data.get("device_ts")
    return Reading(
        key=str(data["key"]),
        device_id=str(data["device_id"]),
        stream=Stream(data["stream"]),
        device_ts=None if device_ts is None else _aware(device_ts),
        received_ts=_aware(data["received_ts"]),
        time_flag=TimeFlag(data.get("time_flag", "ok")),
        payload=PAYLOAD_KINDS[kind](**fields),
    )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def _aware(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return ts


class RecordingWriter:
    """Appends readings and observations to a recording; `flush()` after each batch."""

    def __init__(self, path: str | Path, *, site_id: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file: IO[bytes] = self.path.open("ab")
        self.count = 0
        if fresh:
            self._write(
                {
                    "type": "header",
                    "format": FORMAT,
                    "version": VERSION,
                    "site": site_id,
                    "started_at": _iso(datetime.now(UTC)),
                }
            )

    def _write(self, data: dict[str, Any]) -> None:
        self._file.write(orjson.dumps(data) + b"\n")

    def reading(self, reading: Reading) -> None:
        self._write({"type": "reading", "reading": reading_to_dict(reading)})
        self.count += 1

    def observation(self, observation: Observation) -> None:
        self._write({"type": "observation", "observation": observation.to_dict()})
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_recording(
    path: str | Path, problems: list[str] | None = None
) -> Iterator[Reading | Observation]:
    """Readings and observations in recorded order.

    A bad line raises RecordingError, or, when `problems` is given, is appended there as
    `file:line: why` and skipped.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                item = _parse(raw)
            except (ValueError, KeyError, TypeError) as exc:
                why = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
                problem = f"{path}:{number}: {why}"
                if problems is None:
                    raise RecordingError(problem) from None
                problems.append(problem)
                continue
            if item is not None:
                yield item


def _parse(raw: bytes) -> Reading | Observation | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}); a truncated last line?") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    kind = data.get("type")
    if kind == "reading":
        return reading_from_dict(data["reading"])
    if kind == "observation":
        observation = Observation.from_dict(data["observation"])
        if observation.first_seen.tzinfo is None or observation.last_seen.tzinfo is None:
            raise ValueError("observation times need a UTC offset")
        return observation
    if kind == "header":
        if data.get("format") != FORMAT:
            raise ValueError(f"header format is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise ValueError(f"recording version {data.get('version')!r}; this reads {VERSION}")
        return None
    raise ValueError(
        f"unknown line type {json.dumps(kind)}; expected reading, observation or header"
    )
