"""Files a site's devices need before `run` can start them: each camera's YOLO weights and each
video file source. `check` reports them (so `run` does not die on them later), and `run` may call
the same function before it starts anything.

The config model only names these paths (a config written for another box need not carry its
model), so their existence is checked here, on the machine that will run.
"""

from __future__ import annotations

from pathlib import Path

from ingest.config import VIDEO_PUSH, DeviceKind, SiteConfig
from ingest.yamlsource import ConfigError, YamlDocument, format_loc, load_yaml, not_regular


def video_file(stream: str | None) -> Path | None:
    """The local file a `stream:` names (a path or file://), None for a URL or pushed video."""
    if not stream or stream in VIDEO_PUSH:
        return None
    if "://" in stream and not stream.startswith("file://"):
        return None
    return Path(stream.removeprefix("file://"))


def preflight_problems(config: SiteConfig, config_path: str | Path) -> list[str]:
    """One line per missing or unusable file, as `file:line: field: device X: why`.

    `config` is the loaded site (its relative paths resolved against devices.yaml's folder);
    `config_path` is the file it came from, read again only for line numbers. Devices this box
    does not run (another worker's, `broker.owns`) and cameras without `detect` are skipped, as
    `run` skips them.
    """
    doc: YamlDocument | None
    try:
        doc = load_yaml(config_path)
    except ConfigError:
        doc = None  # the lines are a convenience: the problems stand without them
    problems = []
    for index, device in enumerate(config.devices):
        if device.kind not in (DeviceKind.CAMERA, DeviceKind.DRONE) or device.detect is None:
            continue
        if not config.broker.owns(device.id):
            continue

        def problem(*field: str | int, why: str, i: int = index, d: str = device.id) -> None:
            loc = ("devices", i, *field)
            where = doc.where(loc) if doc is not None else str(config_path)
            problems.append(f"{where}: {format_loc(loc)}: device {d}: {why}")

        weights = Path(device.detect.weights)
        if not weights.is_dir():  # an OpenVINO model is a folder
            why = not_regular(weights)
            if why is not None:
                problem("detect", "weights", why=f"YOLO weights {weights}: {_plain(why)}")
        path = video_file(device.stream)
        if path is not None:
            why = not_regular(path)
            if why is not None:
                problem("stream", why=f"video file {path}: {_plain(why)}")
    return problems


def _plain(why: str) -> str:
    return "not found" if why == "No such file or directory" else why
