"""Table tests of what the machine tells the person a ``manual`` rotation waits for
(:func:`rotatectl.machine.person_notice`) and what ``status`` says it waits for
(:func:`rotatectl.machine.person_waiting`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.machine import person_notice, person_waiting
from rotatectl.model import Phase, Rotation, RotationEvent, RotationKind

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
ASK = "supply a new key"


def rotation(*events: tuple[timedelta, str, str]) -> Rotation:
    base = Rotation(
        id="r1",
        credential="vendor/acme",
        kind=RotationKind.SCHEDULED,
        phase=Phase.ISSUE,
        started=T0,
        new_version_id="v2",
        new_version_number=2,
        old_version_id="v1",
        history=(RotationEvent(T0, "issue", "started"),),
    )
    history = tuple(RotationEvent(T0 + at, what, detail) for at, what, detail in events)
    return replace(base, history=(*base.history, *history))


NEEDED = (timedelta(0), "person-needed", f"{ASK}: do it")


@pytest.mark.parametrize(
    ("events", "now", "remind", "deadline", "expected", "ask"),
    [
        # Never told: the instructions, once.
        ((), H, 24 * H, None, ("person-needed", "warning"), ASK),
        # Told an hour ago, reminders daily: nothing yet.
        ((NEEDED,), H, 24 * H, None, None, ASK),
        # A day later: a reminder.
        ((NEEDED,), 24 * H, 24 * H, None, ("person-reminder", "warning"), ASK),
        # No reminders at all (remind_every = 0s).
        ((NEEDED,), 99 * H, None, None, None, ASK),
        # Past the deadline: escalated, critical, before any reminder.
        ((NEEDED,), 72 * H, 24 * H, 72 * H, ("person-overdue", "critical"), ASK),
        # Escalated already: reminders go on, no second escalation.
        (
            (NEEDED, (72 * H, "person-overdue", f"{ASK}: late")),
            80 * H,
            24 * H,
            72 * H,
            None,
            ASK,
        ),
        (
            (NEEDED, (72 * H, "person-overdue", f"{ASK}: late")),
            96 * H,
            24 * H,
            72 * H,
            ("person-reminder", "warning"),
            ASK,
        ),
        # Told of another ask (the key was supplied; now a revoke): told anew.
        (
            (NEEDED, (2 * H, "propagate", "")),
            3 * H,
            24 * H,
            None,
            ("person-needed", "warning"),
            "revoke k1",
        ),
    ],
)
def test_person_notice(events, now, remind, deadline, expected, ask) -> None:
    notice = person_notice(rotation(*events), ask, "do it", T0 + now, remind, deadline)
    assert (None if notice is None else (notice.kind, notice.severity)) == expected
    if notice is not None:
        assert notice.message.startswith(f"{ask}: ") and notice.attention


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ((), None),
        ((NEEDED,), (ASK, T0, "do it")),
        ((NEEDED, (24 * H, "person-reminder", f"{ASK}: do it")), (ASK, T0, "do it")),
        # The person acted: a later step of the rotation.
        ((NEEDED, (2 * H, "propagate", "")), None),
    ],
)
def test_person_waiting(events, expected) -> None:
    assert person_waiting(rotation(*events)) == expected


def test_nobody_is_waited_for_once_the_rotation_ended() -> None:
    ended = replace(rotation(NEEDED), phase=Phase.ABORTED)
    assert person_waiting(ended) is None
