"""The pure state machine: what to do next, given what is.

``next_action`` imports no I/O and reads no clock: the rotation record, the
versions, the policy, the time and the usage observation are all arguments.
The runner executes the action it returns and asks again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .durations import format_duration
from .model import (
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

# How often people are reminded that a laggard still uses the old key.
REMINDER_INTERVAL = timedelta(hours=4)


class ActionKind(StrEnum):
    START = "start"  # begin a rotation (due, or asked for)
    PUBLISH = "publish"  # mint the new key and publish it as pending
    PROMOTE = "promote"  # make the new key current
    CHECK_USAGE = "check-usage"  # ask the probe about the old (and new) key, then ask again
    TEST = "test"  # the pre-promotion test: does every server accept the new key?
    RETIRE = "retire"  # disable the old key at the issuer and mark it retired
    ABORT = "abort"  # revoke the unpromoted new key and end the rotation
    ROLLBACK = "rollback"  # the new key is rejected: re-promote the old one
    COMPLETE = "complete"  # close the rotation record (nothing left to retire)
    DESTROY = "destroy"  # delete a retired key for good after the retention window
    WAIT = "wait"  # nothing to do before ``until``
    IDLE = "idle"  # no rotation in flight and none due before ``until``
    ATTENTION = "attention"  # a human must look (still used past max_overlap, drift)


@dataclass(frozen=True)
class Action:
    """One decision. ``until`` is set for WAIT/IDLE; ``version_id`` for DESTROY."""

    kind: ActionKind
    reason: str = ""
    until: datetime | None = None
    version_id: str | None = None
    # For WAIT: also needs attention (e.g. on_still_used=wait past max_overlap).
    attention: bool = False


def current_version(versions: Sequence[Version]) -> Version | None:
    """The single current version, or None before the first promotion."""
    for v in versions:
        if v.state is VersionState.CURRENT:
            return v
    return None


def find_version(versions: Sequence[Version], version_id: str | None) -> Version | None:
    if version_id is None:
        return None
    for v in versions:
        if v.version_id == version_id:
            return v
    return None


def next_due(versions: Sequence[Version], policy: Policy) -> datetime | None:
    """When the credential is due for its next scheduled rotation.

    None means "due now, never rotated". Age counts from promotion: a key
    becomes the one clients use when it is promoted.
    """
    current = current_version(versions)
    if current is None:
        return None
    return (current.promoted or current.created) + policy.max_age


def is_due(versions: Sequence[Version], policy: Policy, now: datetime) -> bool:
    due = next_due(versions, policy)
    return due is None or due <= now


def usage_is_quiet(usage: KeyUsage, policy: Policy, now: datetime) -> bool:
    """The usage gate: is the old key quiet enough to retire?

    UNKNOWN is never quiet unless the policy says so explicitly.
    """
    if usage.status in (UsageStatus.NOT_MEASURED, UsageStatus.NOT_SEEN):
        return True
    if usage.status is UsageStatus.UNKNOWN:
        return policy.unknown_usage_is_quiet
    return usage.last_seen is None or usage.last_seen <= now - policy.usage_quiet


def next_action(
    rotation: Rotation | None,
    versions: Sequence[Version],
    policy: Policy,
    now: datetime,
    usage: KeyUsage | None = None,
    *,
    new_usage: KeyUsage | None = None,
    start_if_due: bool = False,
    requires_test: bool = False,
) -> Action:
    """Decide the next step for one credential.

    ``rotation`` is the latest rotation record (in flight or finished);
    ``usage`` is the probe's answer for the old key and ``new_usage`` for the
    new one (the failed-auth watch) when the caller has them.
    ``start_if_due`` lets ``run`` start a scheduled rotation;
    ``requires_test`` says a pre-promotion test is configured.
    """
    if rotation is None or rotation.phase.terminal:
        return _between_rotations(versions, policy, now, start_if_due)
    phase = rotation.phase
    new = find_version(versions, rotation.new_version_id)
    old = find_version(versions, rotation.old_version_id)

    if phase is Phase.ISSUE:
        if rotation.kind is RotationKind.ROLLBACK:
            return Action(ActionKind.PUBLISH, "make the earlier key accepted again")
        return Action(ActionKind.PUBLISH, "mint the new key and publish it as pending")

    if phase is Phase.ABORT:
        return Action(ActionKind.ABORT, rotation.reason or "aborted")

    if new is None:
        return Action(
            ActionKind.ATTENTION,
            f"the new version {rotation.new_version_id} is missing from the store "
            f"(changed outside rotatectl) during phase {phase.value}",
        )

    if phase is Phase.PROPAGATE:
        if new.state is VersionState.CURRENT:
            # Promoted already; the record update was lost (crash): promote is a no-op.
            return Action(ActionKind.PROMOTE, "record the promotion")
        ready_states = (VersionState.PENDING, VersionState.PREVIOUS)
        if new.state not in ready_states or (
            new.state is VersionState.PREVIOUS and rotation.kind is not RotationKind.ROLLBACK
        ):
            return Action(
                ActionKind.ATTENTION,
                f"the new version is {new.state.value}, expected pending "
                "(changed outside rotatectl)",
            )
        assert rotation.published is not None
        ready = rotation.published + rotation.effective_propagation(policy)
        if now < ready:
            return Action(ActionKind.WAIT, "propagation: verifiers learn the new key", until=ready)
        if requires_test and rotation.tested is None:
            return Action(ActionKind.TEST, "propagation elapsed: test the new key on every server")
        return Action(ActionKind.PROMOTE, "propagation elapsed")

    if phase is Phase.OVERLAP:
        if rotation.old_version_id is None:
            return Action(ActionKind.COMPLETE, "first key of the credential: nothing to retire")
        if old is None or old.state in (VersionState.RETIRED, VersionState.DESTROYED):
            # Retired already (a crash lost the record update), or gone.
            return Action(ActionKind.RETIRE, "record the retirement")
        if rotation.force_retire:
            return Action(ActionKind.RETIRE, f"{rotation.kind.value}: retire the old key now")
        watch = _failed_auth_watch(rotation, policy, now, new_usage)
        if watch is not None:
            return watch
        return _overlap(rotation, old, policy, now, usage)

    if phase is Phase.RETIRE:
        if old is None or old.state in (VersionState.RETIRED, VersionState.DESTROYED):
            return Action(ActionKind.RETIRE, "record the retirement")
        if rotation.force_retire:
            return Action(ActionKind.RETIRE, f"{rotation.kind.value}: retire the old key now")
        # Resumed before the old key was retired (a crash after the intent): it may
        # have been presented since the gate was asked, so the gate is asked again.
        return _overlap(rotation, old, policy, now, usage)

    raise AssertionError(f"unhandled phase {phase}")  # pragma: no cover


def _between_rotations(
    versions: Sequence[Version], policy: Policy, now: datetime, start_if_due: bool
) -> Action:
    for v in versions:
        if v.state is VersionState.RETIRED and v.retired and v.retired + policy.retain <= now:
            return Action(
                ActionKind.DESTROY,
                f"retired {format_duration(now - v.retired)} ago "
                f"(retain {format_duration(policy.retain)})",
                version_id=v.version_id,
            )
    due = next_due(versions, policy)
    if start_if_due and (due is None or due <= now):
        why = "no key yet" if due is None else "max_age reached"
        if policy.window is not None and not policy.window.contains(now):
            opens = policy.window.next_open(now)
            return Action(ActionKind.IDLE, f"due ({why}); the rotation window opens then", opens)
        return Action(ActionKind.START, why)
    # The next thing to happen on its own: a destroy or the due date.
    later = [
        v.retired + policy.retain for v in versions if v.state is VersionState.RETIRED and v.retired
    ]
    if due is not None:
        later.append(due)
    return Action(ActionKind.IDLE, "nothing due", until=min(later) if later else None)


def watches_failed_auth(rotation: Rotation, policy: Policy) -> bool:
    """Whether the failed-auth watch applies: on, and not itself a rollback."""
    return policy.rollback_on_rejections > 0 and rotation.kind is not RotationKind.ROLLBACK


def _failed_auth_watch(
    rotation: Rotation, policy: Policy, now: datetime, new_usage: KeyUsage | None
) -> Action | None:
    """Roll back when the new key is rejected too often soon after promotion."""
    if not watches_failed_auth(rotation, policy):
        return None
    assert rotation.promoted is not None
    watch_end = rotation.promoted + policy.rejection_window
    if now >= watch_end:
        return None
    if new_usage is None:
        return Action(ActionKind.CHECK_USAGE, "failed-auth watch: is the new key rejected?")
    if new_usage.rejected >= policy.rollback_on_rejections:
        return Action(
            ActionKind.ROLLBACK,
            f"the new key was rejected {new_usage.rejected} times since promotion "
            f"(threshold {policy.rollback_on_rejections})",
        )
    return None


def _overlap(
    rotation: Rotation, old: Version, policy: Policy, now: datetime, usage: KeyUsage | None
) -> Action:
    assert rotation.promoted is not None
    overlap_end = rotation.promoted + rotation.effective_overlap(policy)
    if now < overlap_end:
        until = overlap_end
        if watches_failed_auth(rotation, policy):
            # Look again soon: rejections after promotion must be caught early.
            watch_end = rotation.promoted + policy.rejection_window
            if now < watch_end:
                until = min(until, now + min(policy.recheck, timedelta(seconds=10)), watch_end)
        return Action(ActionKind.WAIT, "overlap: the old key is still accepted", until=until)
    if usage is None:
        return Action(ActionKind.CHECK_USAGE, "overlap elapsed: is the old key still used?")
    if usage_is_quiet(usage, policy, now):
        return Action(ActionKind.RETIRE, _quiet_reason(usage, policy))

    deadline = rotation.promoted + max(policy.max_overlap, rotation.effective_overlap(policy))
    seen = _seen_text(usage, now)
    if now < deadline:
        if usage.status is UsageStatus.SEEN and usage.last_seen is not None:
            until = min(usage.last_seen + policy.usage_quiet, deadline)
        else:
            until = min(now + policy.recheck, deadline)
        # Never sleep past the next time the answer could change, nor less than a second.
        until = max(until, now + timedelta(seconds=1))
        return Action(ActionKind.WAIT, f"old key still in use ({seen})", until=until)

    past = f"old key still in use past max_overlap {format_duration(policy.max_overlap)} ({seen})"
    if policy.on_still_used is OnStillUsed.FORCE:
        return Action(ActionKind.RETIRE, f"{past}; on_still_used=force")
    if policy.on_still_used is OnStillUsed.FAIL:
        return Action(ActionKind.ATTENTION, f"{past}; on_still_used=fail")
    return Action(
        ActionKind.WAIT, f"{past}; on_still_used=wait", until=now + policy.recheck, attention=True
    )


def _seen_text(usage: KeyUsage, now: datetime) -> str:
    if usage.status is UsageStatus.UNKNOWN:
        return "usage unknown" + (f": {usage.detail}" if usage.detail else "")
    if usage.last_seen is None:
        return usage.status.value
    who = f" by {', '.join(usage.clients)}" if usage.clients else ""
    return f"last seen {format_duration(now - usage.last_seen)} ago{who}"


def _quiet_reason(usage: KeyUsage, policy: Policy) -> str:
    if usage.status is UsageStatus.NOT_MEASURED:
        return "overlap elapsed (no usage probe configured)"
    if usage.status is UsageStatus.UNKNOWN:
        return "overlap elapsed; usage unknown, treated as quiet by policy"
    if usage.status is UsageStatus.NOT_SEEN:
        return "overlap elapsed; old key not seen"
    return f"overlap elapsed; old key quiet for {format_duration(policy.usage_quiet)}"
