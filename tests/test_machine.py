"""Table-driven tests of the pure state machine: every phase x observation pair."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl.machine import ActionKind, is_due, next_action, next_due, usage_is_quiet
from rotatectl.model import (
    KeyUsage,
    OnStillUsed,
    Phase,
    Policy,
    Rotation,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
POLICY = Policy(
    propagation=timedelta(seconds=30),
    overlap=timedelta(hours=1),
    max_age=timedelta(days=90),
    usage_quiet=timedelta(minutes=15),
    max_overlap=timedelta(hours=4),
    retain=timedelta(days=7),
    recheck=timedelta(minutes=1),
)


def ver(n: int, state: VersionState, **kw: object) -> Version:
    base = Version(
        version_id=f"id-{n}",
        number=n,
        key_id=f"key{n}",
        fingerprint=f"fp{n}",
        state=state,
        created=T0,
        promoted=T0 if state is VersionState.CURRENT else None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def rot(phase: Phase, *, old: str | None = "id-1", **kw: object) -> Rotation:
    base = Rotation(
        id="r1",
        credential="c",
        kind=RotationKind.MANUAL,
        phase=phase,
        started=T0,
        new_version_id="id-2",
        new_version_number=2,
        old_version_id=old,
        published=T0,
        promoted=T0 if phase in (Phase.OVERLAP, Phase.RETIRE) else None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


CUR1 = ver(1, VersionState.CURRENT)
PREV1 = ver(1, VersionState.PREVIOUS)
RET1 = ver(1, VersionState.RETIRED, retired=T0)
PEND2 = ver(2, VersionState.PENDING)
CUR2 = ver(2, VersionState.CURRENT)
SEEN_RECENT = KeyUsage(UsageStatus.SEEN, last_seen=None, count=3, clients=("10.0.0.7",))
NOW_OVERLAP_DONE = T0 + timedelta(hours=1)


def seen(at: datetime) -> KeyUsage:
    return KeyUsage(UsageStatus.SEEN, last_seen=at, count=1, clients=("10.0.0.7",))


# (id, rotation, versions, now, usage, policy, expected kind, expected until)
CASES = [
    # between rotations
    ("none-idle", None, [CUR1], T0 + S, None, POLICY, ActionKind.IDLE, T0 + POLICY.max_age),
    ("none-no-key-run", None, [], T0, None, POLICY, ActionKind.IDLE, None),
    (
        "done-not-due",
        rot(Phase.COMPLETED),
        [CUR2, RET1],
        T0 + S,
        None,
        replace(POLICY, retain=timedelta(days=99)),
        ActionKind.IDLE,
        T0 + POLICY.max_age,
    ),
    (
        "destroy-due",
        rot(Phase.COMPLETED),
        [CUR2, RET1],
        T0 + timedelta(days=7),
        None,
        POLICY,
        ActionKind.DESTROY,
        None,
    ),
    (
        "destroy-not-yet",
        rot(Phase.COMPLETED),
        [CUR2, RET1],
        T0 + timedelta(days=6),
        None,
        POLICY,
        ActionKind.IDLE,
        T0 + timedelta(days=7),
    ),
    (
        "aborted-idle",
        rot(Phase.ABORTED),
        [CUR1],
        T0 + S,
        None,
        POLICY,
        ActionKind.IDLE,
        T0 + POLICY.max_age,
    ),
    (
        "rolled-back-idle",
        rot(Phase.ROLLED_BACK),
        [CUR1],
        T0 + S,
        None,
        POLICY,
        ActionKind.IDLE,
        T0 + POLICY.max_age,
    ),
    # issue
    ("issue", rot(Phase.ISSUE, published=None), [CUR1], T0, None, POLICY, ActionKind.PUBLISH, None),
    (
        "issue-resumed-after-publish",
        rot(Phase.ISSUE, published=None),
        [CUR1, PEND2],
        T0,
        None,
        POLICY,
        ActionKind.PUBLISH,
        None,
    ),
    # propagate
    (
        "propagate-wait",
        rot(Phase.PROPAGATE),
        [CUR1, PEND2],
        T0 + 10 * S,
        None,
        POLICY,
        ActionKind.WAIT,
        T0 + 30 * S,
    ),
    (
        "propagate-edge",
        rot(Phase.PROPAGATE),
        [CUR1, PEND2],
        T0 + 30 * S,
        None,
        POLICY,
        ActionKind.PROMOTE,
        None,
    ),
    (
        "propagate-override",
        rot(Phase.PROPAGATE, propagation=5 * S),
        [CUR1, PEND2],
        T0 + 5 * S,
        None,
        POLICY,
        ActionKind.PROMOTE,
        None,
    ),
    (
        "propagate-first-key",
        rot(Phase.PROPAGATE, old=None),
        [PEND2],
        T0,
        None,
        POLICY,
        ActionKind.PROMOTE,
        None,
    ),
    (
        "propagate-already-promoted",
        rot(Phase.PROPAGATE),
        [PREV1, CUR2],
        T0,
        None,
        POLICY,
        ActionKind.PROMOTE,
        None,
    ),
    (
        "propagate-new-missing",
        rot(Phase.PROPAGATE),
        [CUR1],
        T0 + timedelta(hours=1),
        None,
        POLICY,
        ActionKind.ATTENTION,
        None,
    ),
    (
        "propagate-new-retired",
        rot(Phase.PROPAGATE),
        [CUR1, ver(2, VersionState.RETIRED)],
        T0 + timedelta(hours=1),
        None,
        POLICY,
        ActionKind.ATTENTION,
        None,
    ),
    # overlap: time
    (
        "overlap-wait",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + 59 * timedelta(minutes=1),
        None,
        POLICY,
        ActionKind.WAIT,
        T0 + timedelta(hours=1),
    ),
    (
        "overlap-override",
        rot(Phase.OVERLAP, overlap=2 * S),
        [PREV1, CUR2],
        T0 + 2 * S,
        None,
        POLICY,
        ActionKind.CHECK_USAGE,
        None,
    ),
    (
        "overlap-needs-usage",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.CHECK_USAGE,
        None,
    ),
    (
        "overlap-first-key",
        rot(Phase.OVERLAP, old=None),
        [CUR2],
        T0,
        None,
        POLICY,
        ActionKind.COMPLETE,
        None,
    ),
    (
        "overlap-old-already-retired",
        rot(Phase.OVERLAP),
        [RET1, CUR2],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "overlap-new-missing",
        rot(Phase.OVERLAP),
        [PREV1],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.ATTENTION,
        None,
    ),
    # overlap: usage gate
    (
        "gate-not-measured",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        KeyUsage(UsageStatus.NOT_MEASURED),
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "gate-not-seen",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        KeyUsage(UsageStatus.NOT_SEEN),
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "gate-seen-long-ago",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        seen(NOW_OVERLAP_DONE - timedelta(minutes=15)),
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "gate-seen-recently",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        seen(NOW_OVERLAP_DONE - timedelta(minutes=5)),
        POLICY,
        ActionKind.WAIT,
        NOW_OVERLAP_DONE + timedelta(minutes=10),
    ),
    (
        "gate-unknown",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        KeyUsage(UsageStatus.UNKNOWN),
        POLICY,
        ActionKind.WAIT,
        NOW_OVERLAP_DONE + timedelta(minutes=1),
    ),
    (
        "gate-unknown-quiet-by-policy",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        KeyUsage(UsageStatus.UNKNOWN),
        replace(POLICY, unknown_usage_is_quiet=True),
        ActionKind.RETIRE,
        None,
    ),
    (
        "gate-seen-near-deadline",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=3, minutes=55),
        seen(T0 + timedelta(hours=3, minutes=54)),
        POLICY,
        ActionKind.WAIT,
        T0 + timedelta(hours=4),
    ),
    (
        "gate-past-max-wait",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=4),
        seen(T0 + timedelta(hours=4)),
        POLICY,
        ActionKind.WAIT,
        T0 + timedelta(hours=4, minutes=1),
    ),
    (
        "gate-past-max-fail",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=4),
        seen(T0 + timedelta(hours=4)),
        replace(POLICY, on_still_used=OnStillUsed.FAIL),
        ActionKind.ATTENTION,
        None,
    ),
    (
        "gate-past-max-force",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=4),
        seen(T0 + timedelta(hours=4)),
        replace(POLICY, on_still_used=OnStillUsed.FORCE),
        ActionKind.RETIRE,
        None,
    ),
    (
        "gate-past-max-unknown-fail",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=5),
        KeyUsage(UsageStatus.UNKNOWN),
        replace(POLICY, on_still_used=OnStillUsed.FAIL),
        ActionKind.ATTENTION,
        None,
    ),
    (
        "gate-past-max-quiet",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        T0 + timedelta(hours=5),
        KeyUsage(UsageStatus.NOT_SEEN),
        replace(POLICY, on_still_used=OnStillUsed.FAIL),
        ActionKind.RETIRE,
        None,
    ),
    # retire: resumed after the intent, before the old key was retired (a crash):
    # the usage gate is asked again, as the key may have been presented since
    (
        "retire-intent-resumed",
        rot(Phase.RETIRE),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.CHECK_USAGE,
        None,
    ),
    (
        "retire-intent-resumed-quiet",
        rot(Phase.RETIRE),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        KeyUsage(UsageStatus.NOT_SEEN),
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "retire-intent-resumed-seen-since",
        rot(Phase.RETIRE),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        seen(NOW_OVERLAP_DONE - timedelta(minutes=1)),
        POLICY,
        ActionKind.WAIT,
        NOW_OVERLAP_DONE - timedelta(minutes=1) + POLICY.usage_quiet,
    ),
    (
        "retire-intent-resumed-emergency",
        rot(Phase.RETIRE, force_retire=True, kind=RotationKind.EMERGENCY),
        [PREV1, CUR2],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
    (
        "retire-resumed",
        rot(Phase.RETIRE),
        [RET1, CUR2],
        NOW_OVERLAP_DONE,
        None,
        POLICY,
        ActionKind.RETIRE,
        None,
    ),
]

# fmt: off
CASES += [
    # emergency and automatic rollback: no overlap, no gate
    ("overlap-force-retire", rot(Phase.OVERLAP, force_retire=True, kind=RotationKind.EMERGENCY), [PREV1, CUR2], T0, None, POLICY, ActionKind.RETIRE, None),  # noqa: E501
    # rollback: the "new" version is the earlier key, still previous
    ("rollback-issue", rot(Phase.ISSUE, kind=RotationKind.ROLLBACK), [PREV1, CUR2], T0, None, POLICY, ActionKind.PUBLISH, None),  # noqa: E501
    ("rollback-propagate-previous", rot(Phase.PROPAGATE, kind=RotationKind.ROLLBACK, propagation=0 * S, new_version_id="id-1", old_version_id="id-2"), [PREV1, CUR2], T0, None, POLICY, ActionKind.PROMOTE, None),  # noqa: E501
    ("propagate-previous-not-rollback", rot(Phase.PROPAGATE, new_version_id="id-1", old_version_id="id-2"), [PREV1, CUR2], T0 + timedelta(hours=1), None, POLICY, ActionKind.ATTENTION, None),  # noqa: E501
    # abort
    ("abort", rot(Phase.ABORT), [CUR1, PEND2], T0, None, POLICY, ActionKind.ABORT, None),
    ("abort-before-publish", rot(Phase.ABORT, published=None), [CUR1], T0, None, POLICY, ActionKind.ABORT, None),  # noqa: E501
    # a record a later one superseded is finished: the credential is between rotations
    ("superseded", rot(Phase.SUPERSEDED), [CUR1], T0 + S, None, POLICY, ActionKind.IDLE, T0 + POLICY.max_age),  # noqa: E501
    # invariant 8: a rollback right after a promotion keeps the demoted key for its overlap
    ("rollback-overlap-from-demotion", rot(Phase.OVERLAP, kind=RotationKind.ROLLBACK, new_version_id="id-1", old_version_id="id-2", promoted=T0 + timedelta(days=1)), [ver(1, VersionState.CURRENT, promoted=T0 + timedelta(days=1)), ver(2, VersionState.PREVIOUS, promoted=T0 + timedelta(days=1) - S, demoted=T0 + timedelta(days=1))], T0 + timedelta(days=1, minutes=1), None, POLICY, ActionKind.WAIT, T0 + timedelta(days=1, hours=1)),  # noqa: E501
]
# fmt: on


@pytest.mark.parametrize(
    ("rotation", "versions", "now", "usage", "policy", "kind", "until"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_next_action(rotation, versions, now, usage, policy, kind, until) -> None:
    action = next_action(rotation, versions, policy, now, usage)
    assert action.kind is kind, action.reason
    assert action.until == until
    assert action.reason


def test_every_phase_is_covered() -> None:
    covered = {c[1].phase for c in CASES if c[1] is not None}
    assert covered == set(Phase)


def test_every_usage_status_is_covered() -> None:
    covered = {c[4].status for c in CASES if c[4] is not None}
    assert covered == set(UsageStatus)


def test_destroy_names_the_version() -> None:
    action = next_action(rot(Phase.COMPLETED), [CUR2, RET1], POLICY, T0 + timedelta(days=8))
    assert action.version_id == "id-1"


WATCH = replace(POLICY, rollback_on_rejections=3, rejection_window=timedelta(minutes=10))


def rejected(n: int) -> KeyUsage:
    return KeyUsage(UsageStatus.SEEN, last_seen=T0, count=n, rejected=n)


@pytest.mark.parametrize(
    ("now", "new_usage", "kind"),
    [
        (T0 + S, None, ActionKind.CHECK_USAGE),
        (T0 + S, rejected(2), ActionKind.WAIT),
        (T0 + S, rejected(3), ActionKind.ROLLBACK),
        (T0 + timedelta(minutes=10), None, ActionKind.WAIT),  # window over: no more watching
    ],
    ids=["needs-observation", "below-threshold", "threshold", "after-window"],
)
def test_failed_auth_watch(now, new_usage, kind) -> None:
    action = next_action(rot(Phase.OVERLAP), [PREV1, CUR2], WATCH, now, new_usage=new_usage)
    assert action.kind is kind, action.reason


def test_failed_auth_watch_looks_again_soon_during_the_overlap() -> None:
    action = next_action(rot(Phase.OVERLAP), [PREV1, CUR2], WATCH, T0 + S, new_usage=rejected(0))
    assert action.kind is ActionKind.WAIT
    assert action.until == T0 + S + timedelta(seconds=10)


def test_a_rollback_is_not_watched_for_rejections() -> None:
    back = rot(Phase.OVERLAP, kind=RotationKind.ROLLBACK)
    action = next_action(back, [PREV1, CUR2], WATCH, T0 + S)
    assert action.kind is ActionKind.WAIT


def test_pre_promotion_test_comes_before_promotion() -> None:
    r = rot(Phase.PROPAGATE)
    ready = T0 + POLICY.propagation
    assert next_action(r, [CUR1, PEND2], POLICY, ready, requires_test=True).kind is ActionKind.TEST
    tested = replace(r, tested=ready)
    action = next_action(tested, [CUR1, PEND2], POLICY, ready, requires_test=True)
    assert action.kind is ActionKind.PROMOTE


def test_start_only_when_asked_and_due() -> None:
    due_now = T0 + POLICY.max_age
    assert next_action(None, [CUR1], POLICY, due_now).kind is ActionKind.IDLE
    assert next_action(None, [CUR1], POLICY, due_now, start_if_due=True).kind is ActionKind.START
    assert next_action(None, [CUR1], POLICY, due_now - S, start_if_due=True).kind is ActionKind.IDLE
    assert next_action(None, [], POLICY, T0, start_if_due=True).kind is ActionKind.START
    # An in-flight rotation is advanced, never restarted.
    inflight = next_action(rot(Phase.PROPAGATE), [CUR1, PEND2], POLICY, due_now, start_if_due=True)
    assert inflight.kind is ActionKind.PROMOTE


def test_destroy_before_start() -> None:
    # Housekeeping first: a due credential with an expired retired key destroys it, then starts.
    action = next_action(
        rot(Phase.COMPLETED), [CUR2, RET1], POLICY, T0 + POLICY.max_age, start_if_due=True
    )
    assert action.kind is ActionKind.DESTROY


def test_wait_on_still_used_past_max_is_flagged_for_attention() -> None:
    action = next_action(
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        POLICY,
        T0 + timedelta(hours=4),
        seen(T0 + timedelta(hours=4)),
    )
    assert action.kind is ActionKind.WAIT and action.attention
    assert "10.0.0.7" in action.reason


def test_due_counts_from_promotion() -> None:
    promoted_late = ver(1, VersionState.CURRENT, promoted=T0 + timedelta(days=10))
    assert next_due([promoted_late], POLICY) == T0 + timedelta(days=100)
    assert next_due([], POLICY) is None
    assert is_due([], POLICY, T0)


def test_usage_quiet_boundary() -> None:
    now = T0
    assert usage_is_quiet(seen(now - POLICY.usage_quiet), POLICY, now)
    assert not usage_is_quiet(seen(now - POLICY.usage_quiet + S), POLICY, now)
