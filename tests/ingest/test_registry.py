"""Topic routing: default topics, a device's own (wildcard) topic, unknown devices and streams."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import SiteConfig
from ingest.readings import Stream
from ingest.registry import DeviceRegistry, UnknownTopic
from tests.conftest import site_dict


@pytest.fixture
def registry(tmp_path: Path) -> DeviceRegistry:
    return DeviceRegistry(SiteConfig.model_validate(site_dict(tmp_path, "mqtt://127.0.0.1:1883")))


def test_default_and_custom_topics_route_to_their_device(registry: DeviceRegistry) -> None:
    route = registry.route("streetwatch/test-site/mag-1/geomag")
    assert (route.device.id, route.stream) == ("mag-1", Stream.GEOMAG)
    route = registry.route("fleet/truck-42/position")
    assert (route.device.id, route.stream) == ("legacy-gps", Stream.GPS)
    assert registry.route("streetwatch/test-site/drone-1/snapshot").stream is Stream.SNAPSHOT


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("streetwatch/test-site/ghost/gps", "unknown_device"),
        ("streetwatch/test-site/mag-1/gps", "unknown_stream"),
        ("streetwatch/test-site/mag-1/video", "unknown_stream"),
        ("streetwatch/other-site/mag-1/geomag", "unknown_device"),
        ("fleet/truck-42/position/extra", "unknown_device"),
    ],
)
def test_unknown_topics_name_the_reason(registry: DeviceRegistry, topic: str, reason: str) -> None:
    with pytest.raises(UnknownTopic) as caught:
        registry.route(topic)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_subscriptions_cover_the_site_and_custom_topics(registry: DeviceRegistry) -> None:
    assert registry.subscriptions() == ["streetwatch/test-site/+/+", "fleet/+/position"]
    assert registry.subscriptions("workers") == [
        "$share/workers/streetwatch/test-site/+/+",
        "$share/workers/fleet/+/position",
    ]
