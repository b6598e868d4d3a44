"""Table tests of keys that expire in the pure machine: when the next rotation is due
(:func:`rotatectl.machine.next_due`: ``max_age`` after promotion, or ``renew_before``
the expiry, whichever is first) and when cron must say the expiry comes sooner than a
rotation takes (:func:`rotatectl.machine.expiry_attention`, :func:`expiry_action`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.machine import Action, ActionKind, expiry_action, expiry_attention, next_due
from rotatectl.model import Policy, Version, VersionState

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
D = timedelta(days=1)
H = timedelta(hours=1)
POLICY = Policy(propagation=timedelta(minutes=5), overlap=D, max_age=90 * D, renew_before=14 * D)


def current(expires: datetime | None) -> list[Version]:
    return [Version("v1", 1, "k1", "fp", VersionState.CURRENT, T0, promoted=T0, expires=expires)]


@pytest.mark.parametrize(
    ("expires", "due"),
    [
        (None, T0 + 90 * D),  # no expiry: max_age
        (T0 + 365 * D, T0 + 90 * D),  # expires after max_age: max_age first
        (T0 + 30 * D, T0 + 16 * D),  # renew_before (14d) its expiry
        (T0 + 10 * D, T0 - 4 * D),  # already inside renew_before: due now (overdue)
    ],
)
def test_next_due(expires: datetime | None, due: datetime) -> None:
    assert next_due(current(expires), POLICY) == due


@pytest.mark.parametrize(
    ("left", "said"),
    [
        (None, None),
        (30 * D, None),
        (D + 6 * timedelta(minutes=1), None),  # just more than propagation + overlap
        (D, "sooner than a rotation takes (propagation 5m + overlap 1d)"),
        (H, "sooner than a rotation takes"),
        (timedelta(0), "expired at"),
        (-H, "expired at"),
    ],
)
def test_expiry_attention(left: timedelta | None, said: str | None) -> None:
    now = T0 + 3 * H
    found = expiry_attention(current(None if left is None else now + left), POLICY, now)
    if said is None:
        assert found is None
    else:
        assert found is not None and said in found and found.startswith("v1 (k1) ")


@pytest.mark.parametrize(
    ("kind", "becomes"),
    [
        (ActionKind.IDLE, ActionKind.ATTENTION),
        (ActionKind.WAIT, ActionKind.ATTENTION),
        (ActionKind.ATTENTION, ActionKind.ATTENTION),
        (ActionKind.START, ActionKind.START),  # a renewal starting is the answer
        (ActionKind.PROMOTE, ActionKind.PROMOTE),
    ],
)
def test_expiry_action(kind: ActionKind, becomes: ActionKind) -> None:
    action = Action(kind, "as planned")
    changed = expiry_action(action, current(T0 + H), POLICY, T0)
    assert changed.kind is becomes
    assert (changed is action) is (kind is not ActionKind.IDLE and kind is not ActionKind.WAIT)
