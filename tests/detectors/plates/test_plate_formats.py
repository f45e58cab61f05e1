"""Chinese plate formats: which readings are plates, of which kind, and the O/0, I/1 repairs."""

from __future__ import annotations

import pytest

from detectors.plates.formats import PlateKind, check_plate


@pytest.mark.parametrize(
    ("raw", "plate", "kind"),
    [
        ("京A12345", "京A12345", PlateKind.STANDARD),
        ("沪A·MS087", "沪AMS087", PlateKind.STANDARD),
        ("皖k 66666", "皖K66666", PlateKind.STANDARD),
        ("沪AD12345", "沪AD12345", PlateKind.NEW_ENERGY),
        ("苏ED51712", "苏ED51712", PlateKind.NEW_ENERGY),
        ("粤B12345F", "粤B12345F", PlateKind.NEW_ENERGY),
        ("沪AF71017", "沪AF71017", PlateKind.NEW_ENERGY),
        ("鄂F8888警", "鄂F8888警", PlateKind.POLICE),
        ("琼A6716学", "琼A6716学", PlateKind.SCHOOL),
        ("沪A1707领", "沪A1707领", PlateKind.CONSULATE),
        ("粤ZR066港", "粤ZR066港", PlateKind.HONG_KONG),
        ("粤Z1234澳", "粤Z1234澳", PlateKind.MACAU),
        ("鲁B1234挂", "鲁B1234挂", PlateKind.TRAILER),
        ("WJ粤12345", "WJ粤12345", PlateKind.ARMED_POLICE),
        ("WJ1693015", "WJ1693015", PlateKind.ARMED_POLICE),
    ],
)
def test_valid_plates_of_each_kind(raw: str, plate: str, kind: PlateKind) -> None:
    checked = check_plate(raw)
    assert checked is not None and (checked.text, checked.kind) == (plate, kind)


@pytest.mark.parametrize(
    ("raw", "plate"),
    [
        ("京A1O345", "京A10345"),  # serial: O is never issued, so it is a 0
        ("京AI2345", "京A12345"),  # serial: I is a 1
        ("京0C2345", "京OC2345"),  # authority letter: a 0 there is an O
        ("京1C2345", "京IC2345"),  # and a 1 an I
        ("沪AD1234O", "沪AD12340"),  # new energy: the digits at the end
        ("WJ粤1234O", "WJ粤12340"),
    ],
)
def test_confusions_repaired_where_the_position_decides(raw: str, plate: str) -> None:
    checked = check_plate(raw)
    assert checked is not None and checked.text == plate


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "06",  # a bay number
        "危险品",  # a hazard sign on a truck
        "鲁",  # a province alone
        "京A1234",  # one serial character short
        "京A1234567",  # one too many
        "A12345",  # no province
        "X京12345",  # not a province
        "京812345",  # the authority letter is a digit not mistaken for a letter
        "京A12345警",  # suffix plates have four serial characters
        "京A1234警学",
        "沪AZ12345",  # 8 characters, but Z is no new-energy class
        "沪AD1234A",  # small new energy ends in four digits
        "粤B1234G5",  # large new energy ends in D..K after five digits
        "WJ12345",
        "SN6497",  # a Hong Kong plate: not a mainland format
    ],
)
def test_invalid_readings(raw: str) -> None:
    assert check_plate(raw) is None
