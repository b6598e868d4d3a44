"""The rolling window of previous keys (``keep_previous = N``), decided by the pure
machine: which key a rotation's usage gate is about, and when a rotation retires
nothing because the window has room."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.errors import UsageError
from rotatectl.machine import (
    ActionKind,
    gated_version,
    next_action,
    plan_emergency,
    plan_rollback,
)
from rotatectl.model import (
    KeyUsage,
    Phase,
    Policy,
    Rotation,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
POLICY = Policy(overlap=H, usage_quiet=timedelta(minutes=15), max_overlap=4 * H)
QUIET = KeyUsage(UsageStatus.NOT_SEEN)
P, C, R = VersionState.PREVIOUS, VersionState.CURRENT, VersionState.RETIRED


def window(*states: VersionState) -> list[Version]:
    """Versions 1..n; version n-1 was demoted by the rotation that promoted n (at T0),
    each earlier one an hour before the next."""
    n = len(states)
    return [
        Version(
            version_id=f"id-{i}",
            number=i,
            key_id=f"key{i}",
            fingerprint=f"fp{i}",
            state=state,
            created=T0 - (n - i + 1) * H,
            promoted=T0 - (n - i) * H,
            demoted=None if state is C else T0 - (n - 1 - i) * H,
        )
        for i, state in enumerate(states, start=1)
    ]


def rotation(new: int, kind: RotationKind = RotationKind.MANUAL, **kw: object) -> Rotation:
    base = Rotation(
        id="r",
        credential="c",
        kind=kind,
        phase=Phase.OVERLAP,
        started=T0 - H,
        new_version_id=f"id-{new}",
        new_version_number=new,
        old_version_id=f"id-{new - 1}",
        published=T0 - H,
        promoted=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keep", "states", "kind", "gated"),
    [
        (1, (P, C), RotationKind.MANUAL, 1),  # today: the demoted key
        (3, (P, C), RotationKind.MANUAL, None),  # room for 3: nothing leaves
        (3, (P, P, P, C), RotationKind.MANUAL, None),  # exactly full
        (3, (P, P, P, P, C), RotationKind.MANUAL, 1),  # the oldest of four leaves
        (3, (R, P, P, P, P, C), RotationKind.SCHEDULED, 2),  # retired keys do not count
        (2, (P, P, P, P, C), RotationKind.MANUAL, 1),  # shrunk: one at a time, oldest first
        (3, (P, P, P, P, C), RotationKind.EMERGENCY, 4),  # the compromised key, window or not
        (3, (P, P, C), RotationKind.ROLLBACK, 2),  # a rollback retires what it undid
    ],
)
def test_gated_version(
    keep: int, states: tuple[VersionState, ...], kind: RotationKind, gated: int | None
) -> None:
    versions = window(*states)
    found = gated_version(
        rotation(len(states), kind), versions, replace(POLICY, keep_previous=keep)
    )
    assert (found.number if found else None) == gated


def test_a_window_with_room_completes_without_retiring() -> None:
    versions = window(P, P, C)
    action = next_action(rotation(3), versions, replace(POLICY, keep_previous=3), T0)
    assert action.kind is ActionKind.COMPLETE
    assert action.reason == "v2 stays accepted: the window keeps 3 previous keys"


def test_the_key_leaving_a_full_window_gets_the_overlap_from_this_promotion() -> None:
    """It stopped being current long ago, but left the window only now: its overlap
    counts from this rotation's promotion (invariant 8), then the gate asks about it."""
    policy = replace(POLICY, keep_previous=3)
    versions = window(P, P, P, P, C)
    waiting = next_action(rotation(5), versions, policy, T0 + H / 2)
    assert (waiting.kind, waiting.until) == (ActionKind.WAIT, T0 + H)
    asking = next_action(rotation(5), versions, policy, T0 + H)
    assert asking.kind is ActionKind.CHECK_USAGE
    assert next_action(rotation(5), versions, policy, T0 + H, QUIET).kind is ActionKind.RETIRE
    seen = KeyUsage(UsageStatus.SEEN, last_seen=T0 + H - timedelta(minutes=1), count=1)
    assert next_action(rotation(5), versions, policy, T0 + H, seen).kind is ActionKind.WAIT


def test_resumed_retire_records_once_the_leaving_key_is_retired() -> None:
    policy = replace(POLICY, keep_previous=3)
    versions = window(R, P, P, P, C)  # v1 retired, the record not yet updated
    action = next_action(rotation(5, phase=Phase.RETIRE), versions, policy, T0 + H)
    assert (action.kind, action.reason) == (ActionKind.RETIRE, "record the retirement")


@pytest.mark.parametrize(
    ("keep", "retired_with_it", "says"),
    [
        (1, ("id-1", "id-2"), None),  # today: every accepted key goes with the leaked one
        (3, (), "only the compromised key is retired: v2, v1 stay accepted in the window "),
    ],
)
def test_an_emergency_keeps_the_window(
    keep: int, retired_with_it: tuple[str, ...], says: str | None
) -> None:
    emergency = plan_emergency("c", None, window(P, P, C), T0, "leak", keep_previous=keep)
    assert emergency.force_retire and emergency.old_version_id == "id-3"
    assert emergency.also_retire == retired_with_it
    detail = emergency.history[-1].detail
    assert (says in detail) if says else ("window" not in detail)


def test_rollback_to_any_key_of_the_window() -> None:
    versions = window(P, P, P, C)  # v1..v3 previous, v4 current
    done = rotation(4, phase=Phase.COMPLETED, finished=T0)
    back = plan_rollback("c", done, versions, T0 + H, "bad deploy", to=2)
    assert (back.kind, back.new_version_id, back.old_version_id) == (
        RotationKind.ROLLBACK,
        "id-2",
        "id-4",
    )
    assert back.propagation == timedelta(0)  # still accepted everywhere: promote at once
    assert back.history[-1].detail == "rolling back to v2 (key2): bad deploy"


@pytest.mark.parametrize(
    ("states", "to", "says"),
    [
        ((R, P, C), 1, "v1 is retired: --to takes a key of the window"),
        ((P, P, C), 3, "v3 is current already"),
        ((P, P, C), 9, "no version v9 (it has v1, v2, v3)"),
    ],
)
def test_rollback_to_refuses_what_is_not_in_the_window(
    states: tuple[VersionState, ...], to: int, says: str
) -> None:
    done = rotation(len(states), phase=Phase.COMPLETED, finished=T0)
    with pytest.raises(UsageError, match=re.escape(says)):
        plan_rollback("c", done, window(*states), T0 + H, "", to=to)


def test_rollback_to_a_window_key_after_an_emergency() -> None:
    """The emergency retired the compromised key only; the window's keys were never
    leaked, so going back to one is allowed (the plain rollback is refused)."""
    versions = window(P, P, R, C)  # v3 compromised and retired, v4 current
    emergency = rotation(4, RotationKind.EMERGENCY, phase=Phase.COMPLETED, force_retire=True)
    with pytest.raises(UsageError, match="compromised"):
        plan_rollback("c", emergency, versions, T0 + H, "")
    back = plan_rollback("c", emergency, versions, T0 + H, "", to=2)
    assert back.new_version_id == "id-2"
