"""Table tests of the machine's interventions, backoff and notices (pure functions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rotatectl.errors import UsageError
from rotatectl.machine import (
    REMINDER_INTERVAL,
    Action,
    ActionKind,
    laggard_notice,
    next_action,
    plan_abort,
    plan_adoption,
    plan_emergency,
    plan_overrides,
    plan_rollback,
    plan_start,
    retired_key_alarms,
    retry_after,
    still_used_notice,
)
from rotatectl.model import (
    HISTORY_EVENTS,
    KeyUsage,
    Phase,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
)
from rotatectl.schedule import parse_window

from .test_machine import CUR1, CUR2, PEND2, POLICY, PREV1, RET1, T0, rot, ver

H = timedelta(hours=1)
M = timedelta(minutes=1)
BACKOFF = replace(POLICY, backoff=15 * M, backoff_max=2 * H)


def failed(failures: int, finished=T0):  # type: ignore[no-untyped-def]
    return rot(
        Phase.ABORTED, failure="hook on_promote (x): exit 1", failures=failures, finished=finished
    )


# (id, latest rotation, expected retry_after)
# fmt: off
BACKOFF_CASES = [
    ("no-rotation", None, None),
    ("completed", rot(Phase.COMPLETED, finished=T0), None),
    ("operator-abort-is-not-a-failure", rot(Phase.ABORTED, finished=T0), None),
    ("first-failure", failed(1), T0 + 15 * M),
    ("second-doubles", failed(2), T0 + 30 * M),
    ("third-doubles-again", failed(3), T0 + 60 * M),
    ("capped", failed(5), T0 + 2 * H),
    ("huge-count-capped", failed(10_000), T0 + 2 * H),
]
# fmt: on


@pytest.mark.parametrize(
    ("latest", "until"), [c[1:] for c in BACKOFF_CASES], ids=[c[0] for c in BACKOFF_CASES]
)
def test_retry_after(latest, until) -> None:  # type: ignore[no-untyped-def]
    assert retry_after(latest, BACKOFF) == until


DUE = T0 + POLICY.max_age + M
WINDOW = replace(BACKOFF, window=parse_window(["sat"], "01:00-02:00", "UTC"))

# (id, latest, versions, policy, now, expected kind, expected until, reason has)
# fmt: off
START_CASES = [
    (
        "due-starts",
        rot(Phase.COMPLETED, finished=T0),
        [CUR2],
        BACKOFF,
        DUE,
        ActionKind.START,
        None,
        "max_age",
    ),
    (
        "backoff-holds",
        failed(1, DUE),
        [CUR1],
        BACKOFF,
        DUE + M,
        ActionKind.IDLE,
        DUE + 15 * M,
        "retry after",
    ),
    (
        "backoff-over",
        failed(1, DUE),
        [CUR1],
        BACKOFF,
        DUE + 15 * M,
        ActionKind.START,
        None,
        "max_age",
    ),
    (
        "backoff-holds-a-first-key",
        failed(2),
        [],
        BACKOFF,
        T0 + M,
        ActionKind.IDLE,
        T0 + 30 * M,
        "hook on_promote",
    ),
    (
        "window-holds-a-due-key",
        None,
        [ver(1, VersionState.CURRENT)],
        WINDOW,
        T0 + POLICY.max_age + H,
        ActionKind.IDLE,
        None,
        "window opens",
    ),
    ("window-never-holds-no-key", None, [], WINDOW, T0, ActionKind.START, None, "no key yet"),
]
# fmt: on


@pytest.mark.parametrize(
    ("latest", "versions", "policy", "now", "kind", "until", "says"),
    [c[1:] for c in START_CASES],
    ids=[c[0] for c in START_CASES],
)
def test_start_if_due(latest, versions, policy, now, kind, until, says) -> None:  # type: ignore[no-untyped-def]
    action = next_action(latest, versions, policy, now, start_if_due=True)
    assert action.kind is kind, action.reason
    if until is not None:
        assert action.until == until
    assert says in action.reason


def test_plan_start_carries_the_failure_count_of_a_failed_predecessor() -> None:
    fresh = plan_start("c", RotationKind.MANUAL, failed(3), [CUR1], T0)
    assert fresh.failures == 3 and fresh.phase is Phase.ISSUE and fresh.old_version_id == "id-1"
    assert fresh.new_version_number == 2
    after_success = plan_start("c", RotationKind.MANUAL, rot(Phase.COMPLETED), [CUR1], T0)
    assert after_success.failures == 0


# (id, rotation, versions, propagation, overlap, error text or None, expected overrides)
# fmt: off
OVERRIDE_CASES = [
    ("nothing-given", rot(Phase.PROPAGATE), [CUR1, PEND2], None, None, None, None),
    (
        "overlap-while-pending",
        rot(Phase.PROPAGATE),
        [CUR1, PEND2],
        None,
        30 * M,
        None,
        (None, 30 * M),
    ),
    (
        "propagation-while-pending",
        rot(Phase.PROPAGATE),
        [CUR1, PEND2],
        0 * M,
        None,
        None,
        (0 * M, None),
    ),
    (
        "propagation-after-promotion",
        rot(Phase.OVERLAP),
        [PREV1, CUR2],
        5 * M,
        None,
        "already promoted",
        None,
    ),
    (
        "propagation-promoted-record-lost",
        rot(Phase.PROPAGATE),
        [PREV1, CUR2],
        5 * M,
        None,
        "already promoted",
        None,
    ),
    ("overlap-in-overlap", rot(Phase.OVERLAP), [PREV1, CUR2], None, 2 * H, None, (None, 2 * H)),
    (
        "overlap-while-retiring",
        rot(Phase.RETIRE),
        [PREV1, CUR2],
        None,
        2 * H,
        "no longer applies",
        None,
    ),
    (
        "overlap-past-max",
        rot(Phase.PROPAGATE),
        [CUR1, PEND2],
        None,
        POLICY.max_overlap + M,
        "max_overlap",
        None,
    ),
]


@pytest.mark.parametrize(
    ("rotation", "versions", "prop", "over", "error", "expected"),
    [c[1:] for c in OVERRIDE_CASES],
    ids=[c[0] for c in OVERRIDE_CASES],
)
def test_plan_overrides(rotation, versions, prop, over, error, expected) -> None:  # type: ignore[no-untyped-def]
    if error is not None:
        with pytest.raises(UsageError, match=error):
            plan_overrides("c", rotation, versions, POLICY, T0, propagation=prop, overlap=over)
        return
    changed = plan_overrides("c", rotation, versions, POLICY, T0, propagation=prop, overlap=over)
    if expected is None:
        assert changed is None
        return
    assert (changed.propagation, changed.overlap) == expected
    assert changed.phase is rotation.phase and changed.history[-1].what == "override"


def test_plan_abort_refuses_after_promotion_and_with_nothing_in_flight() -> None:
    with pytest.raises(UsageError, match="no rotation in flight"):
        plan_abort("c", rot(Phase.COMPLETED), [CUR1], T0, "")
    with pytest.raises(UsageError, match="rollback"):
        plan_abort("c", rot(Phase.PROPAGATE), [PREV1, CUR2], T0, "")
    for kind in (RotationKind.EMERGENCY, RotationKind.ROLLBACK):
        # Aborting an intervention would leave the keys it replaces accepted.
        with pytest.raises(UsageError, match="cannot be aborted"):
            plan_abort("c", rot(Phase.ISSUE, kind=kind), [CUR1], T0, "")
    aborting = plan_abort("c", rot(Phase.PROPAGATE), [CUR1, PEND2], T0, "")
    assert aborting.phase is Phase.ABORT and aborting.failure == "" and aborting.reason


def test_plan_rollback_gives_the_demoted_key_a_full_overlap() -> None:
    back = plan_rollback("c", rot(Phase.OVERLAP), [PREV1, CUR2], T0, "")
    assert back.kind is RotationKind.ROLLBACK and back.new_version_id == "id-1"
    assert back.old_version_id == "id-2" and back.overlap is None and not back.force_retire
    auto = plan_rollback("c", rot(Phase.OVERLAP), [PREV1, CUR2], T0, "rejected", auto=True)
    assert auto.overlap == timedelta(0) and auto.force_retire
    for latest, versions, says in (
        (None, [CUR1], "never rotated"),
        (rot(Phase.PROPAGATE), [CUR1, PEND2], "use abort"),
        (rot(Phase.OVERLAP, kind=RotationKind.EMERGENCY), [PREV1, CUR2], "compromised"),
        (rot(Phase.COMPLETED), [ver(1, VersionState.DESTROYED), CUR2], "destroyed"),
    ):
        with pytest.raises(UsageError, match=says):
            plan_rollback("c", latest, versions, T0, "")


@pytest.mark.parametrize(
    ("after", "refused"),
    [
        (timedelta(days=29), False),  # within its retention: it can come back
        (timedelta(days=30), True),  # its destruction is due (and may be half done)
        (timedelta(days=90), True),
    ],
)
def test_plan_rollback_refuses_a_key_past_its_retention(after: timedelta, refused: bool) -> None:
    latest, versions = rot(Phase.COMPLETED), [RET1, CUR2]
    now, retain = T0 + after, timedelta(days=30)
    if refused:
        with pytest.raises(UsageError, match=r"v1 was retired .* past its retention \(30d\)"):
            plan_rollback("c", latest, versions, now, "", retain=retain)
    else:
        assert plan_rollback("c", latest, versions, now, "", retain=retain).new_version_id == "id-1"
    # Without a retention to judge by (the automatic rollback: the key is previous).
    assert plan_rollback("c", latest, versions, now, "").new_version_id == "id-1"


def test_plan_emergency_supersedes_and_retires_what_the_flight_left() -> None:
    in_flight = rot(Phase.PROPAGATE)
    emergency = plan_emergency("c", in_flight, [CUR1, PEND2], T0, "leak")
    assert emergency.kind is RotationKind.EMERGENCY and emergency.supersedes == "r1"
    assert emergency.force_retire and emergency.old_version_id == "id-1"
    assert emergency.also_retire == ("id-2",)
    assert emergency.propagation == timedelta(0) and emergency.failures == 0
    # Its new key not yet published: retired too if it ever appears.
    unpublished = plan_emergency("c", rot(Phase.ISSUE), [CUR1], T0, "leak")
    assert unpublished.also_retire == ("id-2",)
    with pytest.raises(UsageError, match="no current key"):
        plan_emergency("c", None, [], T0, "leak")


def test_laggards_are_named_once_then_reminded() -> None:
    flight = rot(Phase.OVERLAP)
    usage = KeyUsage(UsageStatus.SEEN, last_seen=T0, count=4, clients=("batch-7",))
    first = laggard_notice(flight, [PREV1, CUR2], usage, T0)
    assert first is not None and first.kind == "laggards" and "batch-7" in first.message
    told = flight.noted("laggards", T0, first.message)
    assert laggard_notice(told, [PREV1, CUR2], usage, T0 + M) is None
    again = laggard_notice(told, [PREV1, CUR2], usage, T0 + REMINDER_INTERVAL)
    assert again is not None and again.kind == "reminder"
    assert laggard_notice(flight, [PREV1, CUR2], KeyUsage(UsageStatus.NOT_SEEN), T0) is None


def test_still_used_is_told_once_per_interval() -> None:
    flight = rot(Phase.OVERLAP)
    waiting = Action(ActionKind.WAIT, "still used past max_overlap", attention=True)
    notice = still_used_notice(flight, waiting, T0)
    assert notice is not None and notice.attention
    told = flight.noted("still-used", T0, notice.message)
    assert still_used_notice(told, waiting, T0 + M) is None
    assert still_used_notice(flight, Action(ActionKind.WAIT, "overlap"), T0) is None


def test_retired_key_alarms() -> None:
    seen_after = KeyUsage(UsageStatus.SEEN, last_seen=T0 + H, count=2, clients=("x",))
    emergency = rot(Phase.COMPLETED, kind=RotationKind.EMERGENCY)
    [alarm] = retired_key_alarms(emergency, [RET1, CUR2], {"key1": seen_after})
    assert alarm.severity == "critical" and "compromised key v1" in alarm.message
    [plain] = retired_key_alarms(rot(Phase.COMPLETED), [RET1, CUR2], {"key1": seen_after})
    assert plain.severity == "warning"
    before = KeyUsage(UsageStatus.SEEN, last_seen=T0 - H, count=1)
    assert retired_key_alarms(emergency, [RET1, CUR2], {"key1": before}) == []


def test_a_rotation_history_stays_bounded() -> None:
    flight = rot(Phase.OVERLAP)
    for i in range(HISTORY_EVENTS * 3):
        flight = flight.noted("reminder", T0 + i * M, f"reminder {i}")
    assert len(flight.history) == HISTORY_EVENTS
    assert flight.history[-1].detail == f"reminder {HISTORY_EVENTS * 3 - 1}"


# -- drift adoption --------------------------------------------------------------------

PREV2 = ver(2, VersionState.PREVIOUS)
CUR3 = ver(3, VersionState.CURRENT)
RET2 = ver(2, VersionState.RETIRED, retired=T0)
LEAKED2 = ver(2, VersionState.PREVIOUS, compromised=True)
IN_FLIGHT_3 = rot(Phase.OVERLAP, new_version_id="id-3", old="id-2")


def holds(*ids: str):  # type: ignore[no-untyped-def]
    """The client's value is the value of these versions (by id)."""
    return lambda v: v.version_id in ids


# (id, rotation, versions, which versions hold the client's value,
#  expected: (target number, new?, writes a record?) | None | error text)
# fmt: off
ADOPTION_CASES = [
    ("no-current-version", None, [PEND2], holds(), None),
    ("a-secret-rotatectl-did-not-create", None, [], holds(), (1, True, False)),
    ("value-is-current", None, [CUR1], holds("id-1"), None),
    ("foreign-value", None, [CUR1], holds(), (2, True, True)),
    ("foreign-after-rotations", rot(Phase.COMPLETED), [RET1, CUR2], holds(), (3, True, True)),
    ("pointed-at-previous", rot(Phase.COMPLETED), [PREV2, CUR3], holds("id-2"), (2, False, True)),
    ("resume-its-record", rot(Phase.OVERLAP), [CUR1, PEND2], holds("id-2"), (2, False, False)),
    ("by-hand-ahead", rot(Phase.PROPAGATE), [CUR1, PEND2], holds("id-2"), (2, False, False)),
    ("other-rotation-in-flight", IN_FLIGHT_3, [PREV2, CUR3], holds(), "is in flight"),
    ("value-of-a-retired-key", None, [RET2, CUR3], holds("id-2"), "which is retired"),
    ("value-of-a-compromised-key", None, [LEAKED2, CUR3], holds("id-2"), "compromised"),
    ("key-id-clash", None, [ver(1, VersionState.CURRENT, key_id="kX")], holds(), "already uses"),
]
# fmt: on


@pytest.mark.parametrize(
    ("rotation", "versions", "held", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in ADOPTION_CASES],
)
def test_plan_adoption(rotation, versions, held, expected) -> None:  # type: ignore[no-untyped-def]
    def plan():  # type: ignore[no-untyped-def]
        return plan_adoption("c", rotation, versions, held, "fp-new", "kX", T0)

    if isinstance(expected, str):
        with pytest.raises(UsageError, match=expected):
            plan()
        return
    adoption = plan()
    if expected is None:
        assert adoption is None
        return
    number, new, record = expected
    assert adoption is not None
    assert (adoption.target.number, adoption.new, adoption.record is not None) == (
        number,
        new,
        record,
    )
    current = next((v for v in versions if v.state is VersionState.CURRENT), None)
    assert adoption.replaced == current  # None: taken over as the first version
    if current is None:
        assert adoption.target.state is VersionState.PENDING
        assert (adoption.target.fingerprint, adoption.target.key_id) == ("fp-new", "kX")
        return
    if new:
        assert adoption.target.state is VersionState.PENDING
        assert (adoption.target.fingerprint, adoption.target.key_id) == ("fp-new", "kX")
        assert adoption.target.scopes == current.scopes
    if record:
        r = adoption.record
        assert r is not None and r.phase is Phase.OVERLAP and r.kind is RotationKind.MANUAL
        assert (r.old_version_id, r.new_version_id) == (
            current.version_id,
            adoption.target.version_id,
        )
        assert r.promoted == T0 and r.reason == "drift adopted"


@pytest.mark.parametrize("phase", [Phase.OVERLAP, Phase.RETIRE])
def test_a_new_key_not_current_in_overlap_needs_attention(phase: Phase) -> None:
    """An adoption interrupted between its record and its promotion: never retire the
    key that is still current."""
    action = next_action(rot(phase), [CUR1, PEND2], POLICY, T0 + timedelta(days=1))
    assert action.kind is ActionKind.ATTENTION
    assert "check --adopt" in action.reason


# -- secret formats: a rotation never changes the shape clients read --------------------

DOC1 = replace(CUR1, field="api_key")
# fmt: off
FORMAT_CASES = [
    ("bare-stays-bare", [CUR1], "", None),
    ("json-stays-json", [DOC1], "api_key", None),
    ("first-key-any-format", [], "api_key", None),
    ("unchecked", [DOC1], None, None),
    ("bare-declared-json", [CUR1], "api_key", "v1 is a bare key but the config declares a JSON "
     "document with the key in field 'api_key'"),
    ("json-declared-bare", [DOC1], "", "v1 is a JSON document with the key in field 'api_key' "
     "but the config declares a bare key"),
    ("another-field", [DOC1], "token", "in field 'api_key' but the config declares a JSON "
     "document with the key in field 'token'"),
]
# fmt: on


@pytest.mark.parametrize(
    ("versions", "field", "refused"),
    [pytest.param(*case[1:], id=case[0]) for case in FORMAT_CASES],
)
def test_plan_start_and_emergency_refuse_a_change_of_format(
    versions: list[Version], field: str | None, refused: str | None
) -> None:
    def start() -> object:
        return plan_start("c", RotationKind.MANUAL, None, versions, T0, field=field)

    def emergency() -> object:
        return plan_emergency("c", None, versions, T0, "leak", field=field)

    for plan in (start, emergency) if versions else (start,):
        if refused is None:
            plan()
            continue
        with pytest.raises(UsageError) as raised:
            plan()
        assert refused in str(raised.value)
        assert "a rotation would change the shape every client reads" in str(raised.value)


def test_a_first_adoption_records_the_field_the_key_is_in() -> None:
    adoption = plan_adoption("c", None, [], lambda v: False, "fp", "kX", T0, field="api_key")
    assert adoption is not None and adoption.replaced is None and adoption.record is None
    assert (adoption.target.number, adoption.target.field) == (1, "api_key")
