"""Duration strings: ``30s``, ``15m``, ``24h``, ``7d``, ``1w``, ``1h30m``, ``0s``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")
# Bounded so that adding a duration to a datetime never overflows.
_MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """Parse a duration string. Raises ValueError with a one-line reason.

    Units must appear in descending order, each at most once (``1h30m``, not
    ``30m1h``), so that a typo is an error rather than a surprise.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30s' or '1h30m', got {text!r}")
    s = text.strip().lower()
    if not _WHOLE.fullmatch(s):
        raise ValueError(f"bad duration {text!r}: use e.g. '30s', '15m', '24h', '7d', '1h30m'")
    seen: list[str] = []
    total = 0
    for number, unit in _PART.findall(s):
        if seen and list(_UNITS).index(unit) <= list(_UNITS).index(seen[-1]):
            raise ValueError(f"bad duration {text!r}: units must go from largest to smallest")
        seen.append(unit)
        total += int(number) * _UNITS[unit]
        if total > _MAX_SECONDS:
            raise ValueError(f"bad duration {text!r}: longer than 100 years")
    return timedelta(seconds=total)


def format_remaining(delta: timedelta) -> str:
    """Like :func:`format_duration`, rounded up: a countdown never shows 0s early."""
    return format_duration(timedelta(seconds=math.ceil(delta.total_seconds())))


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly (``1h30m``, ``45s``, ``0s``); negative gets '-'."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts[:2])
