"""The `evidence:` section of devices.yaml: defaults, paths, and errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evidence.service import EvidenceService
from evidence.settings import evidence_paths
from ingest.config import load_config
from ingest.yamlsource import ConfigError
from tests.evidence.evidence_support import site_dict


def _write(tmp_path: Path, evidence: dict) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(site_dict(tmp_path, **evidence), sort_keys=False))
    return path


def test_defaults_and_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, {}))
    paths = evidence_paths(config)
    var = tmp_path / "var"
    assert paths.root == var / "evidence"
    assert paths.key == var / "keys" / "box_ed25519.pem"
    assert paths.cases == var / "cases.sqlite" and paths.outbox == var / "case_outbox.sqlite"
    assert config.evidence.feed.http is None and config.evidence.blur.enabled is False


def test_full_example(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            {
                "key": "/etc/streetwatch/box.pem",
                "cases": "state/cases.sqlite",
                "quota_bytes": 50 * 1024**3,
                "retention_days": 180,
                "clip_preset": "superfast",
                "feed": {
                    "http": {
                        "url": "https://cases.example.gov/api/v1/cases",
                        "token_env": "CASE_SYSTEM_TOKEN",
                        "media": "upload",
                        "timeout_s": 30,
                    },
                    "mqtt": {"topic": "city/{site}/cases"},
                    "retry": {"min_delay_s": 2, "max_delay_s": 900},
                },
            },
        )
    )
    paths = evidence_paths(config)
    assert paths.key == Path("/etc/streetwatch/box.pem")
    assert paths.cases == tmp_path / "var" / "state" / "cases.sqlite"
    assert config.evidence.feed.http.media == "upload"
    service = EvidenceService.from_config(
        config.model_copy(
            update={"evidence": config.evidence.model_copy(update={"key": tmp_path / "k.pem"})}
        ),
        None,
        None,
    )
    assert service.retention is not None and service.retention.quota_bytes == 50 * 1024**3


@pytest.mark.parametrize(
    ("evidence", "field", "why"),
    [
        ({"feed": {"http": {"url": "ftp://x"}}}, "evidence.feed.http.url", "http://"),
        (
            {"feed": {"http": {"url": "https://u:p@x/"}}},
            "evidence.feed.http.url",
            "credentials",
        ),
        (
            {"feed": {"http": {"url": "https://x/", "media": "inline"}}},
            "evidence.feed.http.media",
            "upload|reference",
        ),
        (
            {"feed": {"http": {"url": "https://x/", "token_env": "not a name"}}},
            "evidence.feed.http.token_env",
            "environment variable",
        ),
        ({"quota_bytes": 10}, "evidence.quota_bytes", "greater than or equal"),
        (
            {"feed": {"retry": {"min_delay_s": 9, "max_delay_s": 1}}},
            "evidence.feed.retry",
            "larger",
        ),
        ({"blur": {"enabld": True}}, "evidence.blur.enabld", "enabld"),
        ({"clip_preset": "warp"}, "evidence.clip_preset", "ultrafast"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, evidence, field: str, why: str) -> None:
    path = _write(tmp_path, evidence)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problem = next(p for p in info.value.problems if field in p)
    assert problem.startswith(f"{path}:") and problem.split(":")[1].isdigit()
    assert why in problem
