from datetime import UTC, datetime, timedelta

from streetwatch.watermark import Watermark

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_slowest_live_device_holds_the_clock_back():
    clock = Clock()
    mark = Watermark(idle_after_s=30, monotonic=clock)
    assert mark.value() is None
    mark.observe("cam", T0 + timedelta(minutes=9))
    mark.observe("gps", T0)
    assert mark.value() == T0
    mark.observe("gps", T0 + timedelta(minutes=1))
    assert mark.value() == T0 + timedelta(minutes=1)


def test_a_silent_device_stops_holding_it_back_and_it_never_goes_backwards():
    clock = Clock()
    mark = Watermark(idle_after_s=30, monotonic=clock)
    mark.observe("gps", T0)
    mark.observe("cam", T0 + timedelta(minutes=5))
    clock.now = 20
    mark.observe("cam", T0 + timedelta(minutes=6))
    assert mark.value() == T0
    clock.now = 40
    mark.observe("cam", T0 + timedelta(minutes=7))
    assert mark.value() == T0 + timedelta(minutes=7)
    clock.now = 45
    mark.observe("gps", T0 + timedelta(seconds=10))
    assert mark.value() == T0 + timedelta(minutes=7)


def test_when_everything_is_silent_the_clock_follows_the_wall_clock():
    clock = Clock()
    mark = Watermark(idle_after_s=30, monotonic=clock)
    mark.observe("mag", T0)
    clock.now = 100
    assert mark.value() == T0 + timedelta(seconds=100)
