"""Rotation windows and their effect on run's scheduling."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotatectl.machine import ActionKind, next_action
from rotatectl.model import Policy, Version, VersionState
from rotatectl.schedule import Window, parse_window

# 2026-11-30 is a Monday.
MON_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_parse_days_ranges_and_hours() -> None:
    w = parse_window(["mon-fri"], "09:00-17:00", "UTC")
    assert w.days == frozenset(range(5)) and (w.start, w.end) == (time(9), time(17))
    assert parse_window(["sat-mon"], None, None).days == frozenset({5, 6, 0})
    assert parse_window(None, None, None).days == frozenset(range(7))


@pytest.mark.parametrize(
    ("days", "hours", "zone", "needle"),
    [
        (["funday"], None, None, "bad day"),
        ([], None, None, "at least one day"),
        (None, "9-5", None, "bad hours"),
        (None, None, "Mars/Olympus", "unknown time zone"),
    ],
)
def test_parse_errors(days, hours, zone, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_window(days, hours, zone)


def test_contains_and_next_open_in_a_named_zone() -> None:
    w = parse_window(["mon-fri"], "09:00-17:00", "America/New_York")  # UTC-5 in winter
    assert not w.contains(MON_10)  # 05:00 in New York
    opens = w.next_open(MON_10)
    assert opens == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    assert w.contains(opens) and not w.contains(opens - timedelta(seconds=1))
    friday_evening = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # 18:00 Friday in New York
    assert w.next_open(friday_evening) == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    w = parse_window(["fri"], "22:00-04:00", "UTC")
    assert w.contains(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))  # Friday night
    assert w.contains(datetime(2026, 12, 5, 3, 0, tzinfo=UTC))  # Saturday early: Friday's
    assert not w.contains(datetime(2026, 12, 4, 3, 0, tzinfo=UTC))  # Friday early: Thursday's


@given(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles"]),
    st.sets(st.integers(0, 6), min_size=1),
    st.integers(0, 23),
    st.integers(0, 23),
)
def test_next_open_is_inside_and_not_before(moment, zone, days, a, b) -> None:
    w = Window(frozenset(days), time(a), time(b), zone)
    opens = w.next_open(moment)
    assert opens >= moment and w.contains(opens)
    assert opens - moment <= timedelta(days=8)


def test_run_starts_a_due_rotation_only_inside_its_window() -> None:
    policy = replace(Policy(), window=parse_window(["mon-fri"], "09:00-17:00", "UTC"))
    old = Version(
        "v1",
        1,
        "k1",
        "f1",
        VersionState.CURRENT,
        MON_10 - timedelta(days=100),
        promoted=MON_10 - timedelta(days=100),
    )
    sunday = MON_10 - timedelta(days=1)
    action = next_action(None, [old], policy, sunday, start_if_due=True)
    assert action.kind is ActionKind.IDLE and action.until == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert "window" in action.reason
    assert next_action(None, [old], policy, MON_10, start_if_due=True).kind is ActionKind.START
