"""Which device and stream a topic belongs to, and what to subscribe to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from paho.mqtt.client import topic_matches_sub

from ingest.config import Device, Ingest, SiteConfig
from ingest.decoders.base import DecodeContext
from ingest.readings import Stream


@dataclass(frozen=True, slots=True)
class Route:
    device: Device
    stream: Stream

    def context(
        self,
        topic: str,
        received_ts: datetime,
        user_properties: tuple[tuple[str, str], ...] = (),
        limits: Ingest | None = None,
    ) -> DecodeContext:
        """How a message on this route is decoded (`limits`: the site's `ingest:` section)."""
        limits = limits or Ingest()
        return DecodeContext(
            device_id=self.device.id,
            stream=self.stream,
            fmt=self.device.format_of(self.stream),
            crs=self.device.crs.value,
            topic=topic,
            received_ts=received_ts,
            user_properties=user_properties,
            max_future_s=limits.max_clock_future_s,
            max_past_s=limits.max_clock_past_s,
            max_image_pixels=limits.max_image_pixels,
            metrics=self.device.metrics,
        )


class UnknownTopic(LookupError):
    """A topic no configured device publishes on. `reason` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class DeviceRegistry:
    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.prefix = f"streetwatch/{config.site.id}/"
        self._default: dict[str, Device] = {}
        self._exact: dict[str, Route] = {}
        self._wildcard: list[tuple[str, Route]] = []
        for device in config.devices:
            self._default[device.id] = device
            if device.topic is None:
                continue
            route = Route(device, device.streams[0])
            if device.has_wildcard_topic:
                self._wildcard.append((device.topic, route))
            else:
                self._exact[device.topic] = route

    def subscriptions(self, shared_group: str | None = None) -> list[str]:
        broker = self.config.broker
        if broker.partition is None:
            filters = [f"{self.prefix}+/+"]
            filters += [d.topic for d in self.config.devices if d.topic]
        else:
            owned = [d for d in self.config.devices if broker.owns(d.id)]
            filters = [d.topic or f"{self.prefix}{d.id}/+" for d in owned]
        if shared_group:
            return [f"$share/{shared_group}/{f}" for f in filters]
        return filters

    def route(self, topic: str) -> Route:
        route = self._exact.get(topic)
        if route is not None:
            return route
        if topic.startswith(self.prefix):
            parts = topic[len(self.prefix) :].split("/")
            if len(parts) == 2:
                device_id, stream_name = parts
                device = self._default.get(device_id)
                if device is None:
                    raise UnknownTopic("unknown_device", f"no device {device_id!r} in devices.yaml")
                try:
                    stream = Stream(stream_name)
                except ValueError:
                    stream = None
                if stream is None or stream not in device.streams:
                    allowed = ", ".join(s.value for s in device.streams)
                    raise UnknownTopic(
                        "unknown_stream",
                        f"{device.kind.value} device {device_id!r} has no stream "
                        f"{stream_name!r} (it has: {allowed})",
                    )
                return Route(device, stream)
        for pattern, candidate in self._wildcard:
            if topic_matches_sub(pattern, topic):
                return candidate
        raise UnknownTopic("unknown_device", f"no device publishes on topic {topic!r}")
