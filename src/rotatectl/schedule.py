"""Rotation windows: the days and hours when a scheduled rotation may start.

A window never delays an in-flight rotation, a manual ``rotate`` or an
emergency: it only decides when ``run`` may *start* a due one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    """Days (0 = Monday) and a time range in ``timezone``; ``end`` may be before
    ``start`` (a window across midnight belongs to the day it starts on)."""

    days: frozenset[int] = frozenset(range(7))
    start: time = time(0, 0)
    end: time = time(0, 0)  # equal to start: the whole day
    timezone: str = "UTC"

    def _zone(self) -> ZoneInfo:
        # zoneinfo (and the tz database it finds) only where a window is configured.
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    def contains(self, moment: datetime) -> bool:
        """Whether a scheduled rotation may start at ``moment``."""
        local = moment.astimezone(self._zone())
        clock = local.time().replace(tzinfo=None)
        if self.start == self.end:
            return local.weekday() in self.days
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # Across midnight: the late part belongs to today, the early part to yesterday.
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, moment: datetime) -> datetime:
        """The first moment at or after ``moment`` inside the window."""
        if self.contains(moment):
            return moment
        zone = self._zone()
        local = moment.astimezone(zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=zone)
            if opening >= local:
                return opening.astimezone(moment.tzinfo)
        raise ValueError("the window never opens")  # pragma: no cover - days is never empty


def parse_window(days: list[str] | None, hours: str | None, timezone: str | None) -> Window:
    """Build a Window from config values. Raises ValueError with a one-line reason.

    ``days``: names like ``mon`` or ranges like ``mon-fri``; ``hours``:
    ``"09:00-17:00"``; ``timezone``: an IANA name (default UTC).
    """
    chosen: set[int] = set()
    for item in days if days is not None else ["mon-sun"]:
        first, _, last = item.strip().lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"bad day {item!r}: use mon..sun or a range like mon-fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not chosen:
        raise ValueError("days must name at least one day")
    start = end = time(0, 0)
    if hours is not None:
        try:
            left, right = hours.split("-")
            start, end = time.fromisoformat(left.strip()), time.fromisoformat(right.strip())
        except ValueError:
            raise ValueError(f"bad hours {hours!r}: use e.g. '09:00-17:00'") from None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = timezone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
    return Window(frozenset(chosen), start, end, zone)
