"""Field types the rule files share: durations, one-or-many name lists, and the wording of an
unknown name (with a did-you-mean)."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^(?:{_NUM}d)?(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?$")
DURATION_HINT = "expected a duration like 30s, 5m, 1h30m, 2d or a number of seconds"


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `1h30m`, `2d`, `90` (seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").lower()
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(DURATION_HINT)
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ValueError(DURATION_HINT)
    if not (0 <= seconds < 10 * 365 * 86400):
        raise ValueError(f"{DURATION_HINT}; it must be 0 or more")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as `30s`, `5m`, `1h30m` or a plain number of seconds."""


def _listify(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [value]
    return value


Names = Annotated[list[str], BeforeValidator(_listify)]
"""One name or a list of names."""


def unknown(what: str, value: str, known: list[str]) -> str:
    """`unknown zone 'np-2' (not in devices.yaml); did you mean 'np-1'?` and the like."""
    message = f"unknown {what} {value!r}"
    if what in ("zone", "device"):
        message += " (not in devices.yaml)"
    close = difflib.get_close_matches(str(value), known, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; expected one of: {', '.join(sorted(known)) or 'none defined'}"
