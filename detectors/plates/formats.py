"""Chinese licence-plate formats (GA 36): which readings are plates at all, and of what kind.

An OCR reading is normalised (separators dropped, upper case) and the classic confusions are
undone where the position decides: serial characters never use the letters I or O, so there
they are 1 and 0; the issuing-authority letter after the province is never a digit, so there
0 and 1 are O and I. A reading that fits no format is not a plate: the caller drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
SUFFIXES = "警学领港澳挂"
_SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
"""Serial characters: digits and letters except I and O (GA 36-2018)."""
_NEV_SMALL = "ABCDEFGHJK"
"""First serial character of a small new-energy plate (D/F, widened to A–K in 2022)."""

_P = f"[{PROVINCES}]"
_A = "[A-Z]"
_S = f"[{_SERIAL}]"


class PlateKind(StrEnum):
    STANDARD = "standard"
    """Blue or yellow: province, authority letter, five serial characters."""
    NEW_ENERGY = "new_energy"
    """Green: province, authority letter, six serial characters."""
    POLICE = "police"
    SCHOOL = "school"
    CONSULATE = "consulate"
    HONG_KONG = "hong_kong"
    MACAU = "macau"
    TRAILER = "trailer"
    ARMED_POLICE = "armed_police"
    """WJ, then the province (2012 on) or its two-digit code (older plates, whose small
    branch character above the code is not read), then the serial."""


_BY_SUFFIX = {
    "警": PlateKind.POLICE,
    "学": PlateKind.SCHOOL,
    "领": PlateKind.CONSULATE,
    "港": PlateKind.HONG_KONG,
    "澳": PlateKind.MACAU,
    "挂": PlateKind.TRAILER,
}

_FORMATS: tuple[tuple[re.Pattern[str], PlateKind | None], ...] = (
    (re.compile(f"{_P}{_A}{_S}{{5}}"), PlateKind.STANDARD),
    (re.compile(f"{_P}{_A}[{_NEV_SMALL}]{_S}[0-9]{{4}}"), PlateKind.NEW_ENERGY),
    (re.compile(f"{_P}{_A}[0-9]{{5}}[{_NEV_SMALL}]"), PlateKind.NEW_ENERGY),
    (re.compile(f"{_P}{_A}{_S}{{4}}[{SUFFIXES}]"), None),
    (re.compile(f"WJ{_P}[0-9]{{4}}{_S}"), PlateKind.ARMED_POLICE),
    (re.compile(f"WJ[0-9]{{2}}{_S}{{5}}"), PlateKind.ARMED_POLICE),
)

_SEPARATORS = re.compile(r"[\s·•.\-_:：]")
_DIGIT_FOR = {"O": "0", "I": "1"}
_LETTER_FOR = {"0": "O", "1": "I"}


@dataclass(frozen=True, slots=True)
class PlateText:
    text: str
    kind: PlateKind


def normalise(raw: str) -> str:
    return _SEPARATORS.sub("", raw).upper()


def _serial_fix(chars: str) -> str:
    """Serial positions: I and O are never issued, so a reading of either is a 1 or a 0."""
    return "".join(_DIGIT_FOR.get(c, c) for c in chars)


def candidates(raw: str) -> list[str]:
    """The reading and its position-decided repairs, most literal first."""
    text = normalise(raw)
    out = [text]
    if len(text) >= 3 and text[0] in PROVINCES:
        letter = _LETTER_FOR.get(text[1], text[1])
        out.append(text[0] + letter + _serial_fix(text[2:]))
    elif text.startswith("WJ") and len(text) >= 4:
        out.append(text[:3] + _serial_fix(text[3:]))
    return list(dict.fromkeys(out))


def check_plate(raw: str) -> PlateText | None:
    """The plate this reading is, or None when it fits no Chinese plate format."""
    for text in candidates(raw):
        for pattern, kind in _FORMATS:
            if pattern.fullmatch(text):
                return PlateText(text, kind or _BY_SUFFIX[text[-1]])
    return None
