"""Topic routing: default topics, a device's own (wildcard) topic, unknown devices and streams."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ingest.config import SiteConfig, load_config
from ingest.readings import Stream
from ingest.registry import DeviceRegistry, UnknownTopic
from ingest.yamlsource import ConfigError
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


def test_partitions_split_the_devices_and_subscribe_to_their_own_topics(tmp_path):
    doc = site_dict(tmp_path, "mqtt://127.0.0.1:1883")
    owners: dict[str, int] = {}
    subscribed: list[str] = []
    for index in range(3):
        doc["broker"]["partition"] = {"index": index, "count": 3}
        path = tmp_path / f"p{index}.yaml"
        path.write_text(yaml.safe_dump(doc))
        config = load_config(path)
        filters = DeviceRegistry(config).subscriptions()
        subscribed += filters
        for device in config.devices:
            if config.broker.owns(device.id):
                assert device.id not in owners
                owners[device.id] = index
                expected = device.topic or f"streetwatch/test-site/{device.id}/+"
                assert expected in filters
    assert sorted(owners) == sorted(d["id"] for d in doc["devices"])
    assert len(subscribed) == len(doc["devices"])
    assert not any("+/+" in f for f in subscribed)


def test_partition_errors_name_the_line(tmp_path):
    doc = site_dict(tmp_path, "mqtt://127.0.0.1:1883")
    doc["broker"]["partition"] = {"index": 2, "count": 2}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "broker.partition" in str(err.value.problems) and "below count 2" in str(
        err.value.problems
    )
    doc["broker"]["partition"] = {"index": 0, "count": 2}
    doc["broker"]["shared_group"] = "workers"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "choose one" in str(err.value.problems)
