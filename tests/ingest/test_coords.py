import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.coords import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    distance_m,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

TIANANMEN = (39.9087, 116.3975)
SHANGHAI_BUND = (31.2400, 121.4900)
PARIS = (48.8584, 2.2945)


def test_wgs_to_gcj_reference_value() -> None:
    # Published reference of the standard algorithm (coordtransform): 116.404, 39.915.
    lat, lon = wgs84_to_gcj02(39.915, 116.404)
    assert lat == pytest.approx(39.91640428150164, abs=1e-9)
    assert lon == pytest.approx(116.41024449916938, abs=1e-9)


def test_gcj_bd_reference_value() -> None:
    # Beijing railway station: GCJ-02 (39.90245, 116.42703) is BD-09 (39.90851, 116.43351).
    assert distance_m(gcj02_to_bd09(39.90245, 116.42703), (39.90851, 116.43351)) < 2.0
    assert distance_m(bd09_to_gcj02(39.90851, 116.43351), (39.90245, 116.42703)) < 2.0


@pytest.mark.parametrize("point", [TIANANMEN, SHANGHAI_BUND])
def test_gcj_offset_is_a_few_hundred_metres(point: tuple[float, float]) -> None:
    assert 100.0 < distance_m(point, wgs84_to_gcj02(*point)) < 1000.0


@pytest.mark.parametrize("point", [TIANANMEN, SHANGHAI_BUND])
def test_round_trips_within_half_a_metre(point: tuple[float, float]) -> None:
    assert distance_m(point, gcj02_to_wgs84(*wgs84_to_gcj02(*point))) < 0.5
    assert distance_m(point, bd09_to_wgs84(*wgs84_to_bd09(*point))) < 0.5
    assert distance_m(point, to_wgs84(*wgs84_to_gcj02(*point), "gcj02")) < 0.5
    assert distance_m(point, to_wgs84(*wgs84_to_bd09(*point), "bd09")) < 0.5


def test_inverse_is_iterative_not_one_step() -> None:
    gcj = wgs84_to_gcj02(*SHANGHAI_BUND)
    shifted = wgs84_to_gcj02(*gcj)
    one_step = (2 * gcj[0] - shifted[0], 2 * gcj[1] - shifted[1])
    assert distance_m(SHANGHAI_BUND, one_step) > 1.0
    assert distance_m(SHANGHAI_BUND, gcj02_to_wgs84(*gcj)) < 0.01


def test_outside_china_passes_through() -> None:
    assert out_of_china(*PARIS)
    assert not out_of_china(*TIANANMEN)
    assert wgs84_to_gcj02(*PARIS) == PARIS
    assert gcj02_to_wgs84(*PARIS) == PARIS
    assert to_wgs84(*PARIS, "gcj02") == PARIS


def test_wgs84_is_identity_and_unknown_crs_fails() -> None:
    assert to_wgs84(*TIANANMEN, "wgs84") == TIANANMEN
    with pytest.raises(ValueError, match="crs='utm50n'"):
        to_wgs84(*TIANANMEN, "utm50n")


@settings(max_examples=300, deadline=None)
@given(lat=st.floats(18.0, 53.0), lon=st.floats(74.0, 134.0))
def test_round_trip_anywhere_in_china(lat: float, lon: float) -> None:
    assert distance_m((lat, lon), gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))) < 0.5
    assert distance_m((lat, lon), bd09_to_wgs84(*wgs84_to_bd09(lat, lon))) < 0.5
