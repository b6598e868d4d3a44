"""The pure state machine: what to do next, given what is.

Nothing here does I/O or reads a clock: the rotation record, the versions, the
policy, the time and the usage observations are all arguments.

- :func:`next_action`: the next step of a credential; the engine executes it
  and asks again.
- Interventions: :func:`plan_start`, :func:`plan_abort`, :func:`plan_rollback`,
  :func:`plan_emergency` (which supersedes an in-flight rotation),
  :func:`plan_adoption` (drift adopted: the store's value becomes a new current key),
  :func:`plan_overrides` (an operator's ``--overlap``/``--propagation`` on a
  rotation in flight) and :func:`retry_after` (run's backoff after a failure).
  Each returns the rotation record to write, or raises UsageError naming why not.
- Notices: :func:`laggard_notice`, :func:`still_used_notice` and
  :func:`retired_key_alarms` decide who is told what, and how often.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from .durations import format_duration
from .errors import UsageError
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
    iso,
    new_rotation_id,
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


def gated_version(
    rotation: Rotation, versions: Sequence[Version], policy: Policy
) -> Version | None:
    """The key this rotation's usage gate is about, and that it retires once quiet.

    With ``keep_previous = 1`` (and always for an emergency, which retires the
    compromised key, or a rollback, which retires the key it undoes): the key the
    rotation demoted. With a rolling window of N previous keys: the oldest previous
    key beyond the newest N (by when each stopped being current), or None while the
    window has room. The key being promoted is never one of them.
    """
    old = find_version(versions, rotation.old_version_id)
    if (
        policy.keep_previous <= 1
        or rotation.force_retire
        or rotation.kind in (RotationKind.EMERGENCY, RotationKind.ROLLBACK)
    ):
        return old
    window = sorted(
        (
            v
            for v in versions
            if v.state is VersionState.PREVIOUS and v.version_id != rotation.new_version_id
        ),
        key=lambda v: (v.demoted or v.promoted or v.created, v.number),
        reverse=True,
    )
    if old is not None and old.state is VersionState.PREVIOUS and old not in window:
        window.insert(0, old)
    beyond = window[policy.keep_previous :]
    return beyond[-1] if beyond else None


def next_due(versions: Sequence[Version], policy: Policy) -> datetime | None:
    """When the credential is due for its next scheduled rotation.

    None means "due now, never rotated". Age counts from promotion: a key
    becomes the one clients use when it is promoted.
    """
    current = current_version(versions)
    if current is None:
        return None
    due = (current.promoted or current.created) + policy.max_age
    if current.expires is not None:
        # A key that expires is renewed renew_before its expiry, if that comes first.
        due = min(due, current.expires - policy.renew_before)
    return due


def expiry_attention(versions: Sequence[Version], policy: Policy, now: datetime) -> str | None:
    """Why the current key's expiry needs a person now: it comes sooner than a rotation
    takes (propagation + overlap), so a rotation started now would not finish before
    it; or it has passed. None for a key without an expiry, or with time to spare."""
    current = current_version(versions)
    if current is None or current.expires is None:
        return None
    left = current.expires - now
    needs = policy.propagation + policy.overlap
    when = f"{current.expires:%Y-%m-%d %H:%M}Z"
    if left <= timedelta(0):
        return f"v{current.number} ({current.key_id}) expired at {when}: rotate it now"
    if left <= needs:
        return (
            f"v{current.number} ({current.key_id}) expires at {when}, in "
            f"{format_duration(left)}: sooner than a rotation takes (propagation "
            f"{format_duration(policy.propagation)} + overlap {format_duration(policy.overlap)})"
            "; rotate it now with a shorter --overlap"
        )
    return None


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
        return _between_rotations(rotation, versions, policy, now, start_if_due)
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

    if phase in (Phase.OVERLAP, Phase.RETIRE) and new.state is not VersionState.CURRENT:
        # Promoted by the record, not in the store: an adoption interrupted between its
        # record and its promotion (`check --adopt` finishes it), or a hand edit.
        return Action(
            ActionKind.ATTENTION,
            f"the new version is {new.state.value}, expected current during phase "
            f"{phase.value} (an interrupted `check --adopt` finishes it; else changed "
            "outside rotatectl)",
        )

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
        leaving = gated_version(rotation, versions, policy)
        if leaving is None:
            return Action(
                ActionKind.COMPLETE,
                f"v{old.number} stays accepted: the window keeps {policy.keep_previous} "
                "previous keys",
            )
        return _overlap(rotation, leaving, policy, now, usage)

    if phase is Phase.RETIRE:
        leaving = old if rotation.force_retire else gated_version(rotation, versions, policy)
        if leaving is None or leaving.state in (VersionState.RETIRED, VersionState.DESTROYED):
            return Action(ActionKind.RETIRE, "record the retirement")
        old = leaving
        if rotation.force_retire:
            return Action(ActionKind.RETIRE, f"{rotation.kind.value}: retire the old key now")
        # Resumed before the old key was retired (a crash after the intent): it may
        # have been presented since the gate was asked, so the gate is asked again.
        return _overlap(rotation, old, policy, now, usage)

    raise AssertionError(f"unhandled phase {phase}")  # pragma: no cover


def _between_rotations(
    rotation: Rotation | None,
    versions: Sequence[Version],
    policy: Policy,
    now: datetime,
    start_if_due: bool,
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
        retry = retry_after(rotation, policy)
        if retry is not None and now < retry:
            assert rotation is not None
            return Action(
                ActionKind.IDLE,
                f"due ({why}), but rotation {rotation.id} failed: {rotation.failure}; "
                f"retry after {iso(retry)} (backoff)",
                retry,
            )
        # A credential with no key at all is not held by a window: nothing works yet.
        if due is not None and policy.window is not None and not policy.window.contains(now):
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


def demoted_at(rotation: Rotation, old: Version) -> datetime:
    """When ``old`` stopped being current: its own stamp, and never before this
    rotation's promotion (a rollback re-promotes a key promoted long ago)."""
    assert rotation.promoted is not None
    return max(old.demoted or rotation.promoted, rotation.promoted)


def _overlap(
    rotation: Rotation, old: Version, policy: Policy, now: datetime, usage: KeyUsage | None
) -> Action:
    assert rotation.promoted is not None
    # Invariant 8: the overlap counts from the moment the old key stopped being current.
    demoted = demoted_at(rotation, old)
    overlap_end = demoted + rotation.effective_overlap(policy)
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

    deadline = demoted + max(policy.max_overlap, rotation.effective_overlap(policy))
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


def expiry_action(
    action: Action, versions: Sequence[Version], policy: Policy, now: datetime
) -> Action:
    """What cron does instead of waiting or idling when the current key expires sooner
    than a rotation takes (:func:`expiry_attention`): ATTENTION, saying so. Any other
    action, and an ATTENTION already, as it is."""
    if action.kind not in (ActionKind.WAIT, ActionKind.IDLE):
        return action
    why = expiry_attention(versions, policy, now)
    return Action(ActionKind.ATTENTION, why) if why else action


def drift_action(name: str, problems: Sequence[str]) -> Action:
    """ATTENTION for a store changed behind rotatectl's back: cron must hear of it,
    and no rotation starts until the operator adopts or restores."""
    return Action(
        ActionKind.ATTENTION,
        f"drift: {'; '.join(problems)}; no rotation starts until it is resolved with "
        f"`rotatectl check {name} --adopt` or `--restore`",
    )


# -- backoff ---------------------------------------------------------------------


def retry_after(rotation: Rotation | None, policy: Policy) -> datetime | None:
    """When ``run`` may start the credential again after a failed rotation: the
    backoff doubles with each consecutive failure, capped at ``backoff_max``.
    None when the latest rotation did not fail."""
    if rotation is None or not rotation.failed or rotation.finished is None:
        return None
    wait = policy.backoff
    for _ in range(1, min(rotation.failures, 64)):
        if wait >= policy.backoff_max:
            break
        wait *= 2
    return rotation.finished + min(wait, policy.backoff_max)


# -- interventions -----------------------------------------------------------------


def plan_start(
    name: str,
    kind: RotationKind,
    latest: Rotation | None,
    versions: Sequence[Version],
    now: datetime,
    reason: str = "",
    *,
    propagation: timedelta | None = None,
    overlap: timedelta | None = None,
    detail: str = "",
    field: str | None = None,
) -> Rotation:
    """A new rotation record in phase ISSUE. Its new version id is chosen before
    anything is minted: it is the idempotency token of publish (invariant 6).
    ``field``: the JSON field the config says holds the key ("" a bare value; None: not
    checked); UsageError when the current version's format is another (a rotation
    would change what every client reads)."""
    current = current_version(versions)
    if field is not None and current is not None and current.field != field:
        raise UsageError(format_refusal(name, current, field))
    failures = latest.failures if latest is not None and latest.failed else 0
    rotation = Rotation(
        id=new_rotation_id(),
        credential=name,
        kind=kind,
        phase=Phase.ISSUE,
        started=now,
        new_version_id=str(uuid.uuid4()),
        new_version_number=max((v.number for v in versions), default=0) + 1,
        old_version_id=current.version_id if current else None,
        propagation=propagation,
        overlap=overlap,
        reason=reason,
        failures=failures,
    )
    return rotation.advance(Phase.ISSUE, now, detail=detail or reason or kind.value)


def format_refusal(name: str, current: Version, field: str) -> str:
    """Why a rotation must not start when the config declares another secret format
    (``field``) than the current version's."""

    def shape(f: str) -> str:
        return f"a JSON document with the key in field {f!r}" if f else "a bare key"

    return (
        f"{name}: v{current.number} is {shape(current.field)} but the config declares "
        f"{shape(field)}; a rotation would change the shape every client reads: make "
        "format/field match the store, or rotate into a new path"
    )


def check_overlap(name: str, policy: Policy, overlap: timedelta | None) -> None:
    """UsageError when an operator's ``--overlap`` is longer than ``max_overlap``."""
    if overlap is not None and overlap > policy.max_overlap:
        raise UsageError(
            f"{name}: --overlap {format_duration(overlap)} is longer than max_overlap "
            f"{format_duration(policy.max_overlap)}"
        )


def plan_overrides(
    name: str,
    rotation: Rotation,
    versions: Sequence[Version],
    policy: Policy,
    now: datetime,
    *,
    propagation: timedelta | None,
    overlap: timedelta | None,
) -> Rotation | None:
    """Apply ``--propagation``/``--overlap`` to the rotation in flight; None when
    neither was given. UsageError when one no longer applies (the phase it
    governs is over) or exceeds ``max_overlap``: never silently ignored."""
    if propagation is None and overlap is None:
        return None
    check_overlap(name, policy, overlap)
    new = find_version(versions, rotation.new_version_id)
    promoted = rotation.promoted is not None or (
        new is not None and new.state is VersionState.CURRENT
    )
    said: list[str] = []
    if propagation is not None:
        if promoted or rotation.phase not in (Phase.ISSUE, Phase.PROPAGATE):
            raise UsageError(
                f"{name}: rotation {rotation.id} already promoted its new key; "
                "--propagation no longer applies"
            )
        rotation = replace(rotation, propagation=propagation)
        said.append(f"propagation {format_duration(propagation)}")
    if overlap is not None:
        if rotation.phase not in (Phase.ISSUE, Phase.PROPAGATE, Phase.OVERLAP):
            raise UsageError(
                f"{name}: rotation {rotation.id} is retiring its old key; "
                "--overlap no longer applies"
            )
        rotation = replace(rotation, overlap=overlap)
        said.append(f"overlap {format_duration(overlap)}")
    return rotation.noted("override", now, "operator set " + " and ".join(said))


def plan_abort(
    name: str, rotation: Rotation | None, versions: Sequence[Version], now: datetime, reason: str
) -> Rotation:
    """The in-flight rotation moved to ABORT (revoke its new key). UsageError when
    nothing is in flight or its key was promoted (roll back instead)."""
    if rotation is None or rotation.phase.terminal:
        raise UsageError(f"{name}: no rotation in flight to abort")
    if rotation.kind in (RotationKind.EMERGENCY, RotationKind.ROLLBACK):
        # Aborting it would leave the keys it replaces accepted (a leaked one, or
        # the superseded rotation's): `run` finishes an interrupted intervention.
        what = "an emergency" if rotation.kind is RotationKind.EMERGENCY else "a rollback"
        raise UsageError(
            f"{name}: rotation {rotation.id} is {what}; it cannot be aborted "
            "(`rotatectl run` finishes it)"
        )
    new = find_version(versions, rotation.new_version_id)
    promoted = new is not None and new.state is VersionState.CURRENT
    # The store, not the record, says whether clients were told: a crash can
    # leave the record in propagate after the promotion happened.
    if promoted or rotation.phase not in (Phase.ISSUE, Phase.PROPAGATE, Phase.ABORT):
        raise UsageError(
            f"{name}: rotation {rotation.id} has promoted its new key; "
            "use `rotatectl rollback` instead"
        )
    why = reason or "aborted by the operator"
    return rotation.advance(Phase.ABORT, now, detail=f"aborting: {why}", reason=why)


def plan_rollback(
    name: str,
    rotation: Rotation | None,
    versions: Sequence[Version],
    now: datetime,
    reason: str,
    *,
    auto: bool = False,
    to: int | None = None,
    retain: timedelta | None = None,
) -> Rotation:
    """A rollback rotation re-promoting the key ``rotation`` replaced, or with ``to``
    the previous key of that number (any key of a rolling window: none of them was
    compromised, an emergency retires the compromised key). The key it demotes gets
    a full overlap and the usage gate, like any old key (invariant 8), except in an
    automatic rollback (the failed-auth watch: the new key is rejected). UsageError
    when the earlier key is destroyed or compromised, retired longer than ``retain``
    ago (its destruction is due, and a run cut short may have deleted it at the
    issuer already), ``to`` is not a previous key, or nothing was promoted."""
    if rotation is None:
        raise UsageError(f"{name}: nothing to roll back (never rotated)")
    new = find_version(versions, rotation.new_version_id)
    promoted = new is not None and new.state is VersionState.CURRENT
    if not promoted and rotation.phase in (Phase.ISSUE, Phase.PROPAGATE, Phase.ABORT):
        raise UsageError(f"{name}: rotation {rotation.id} has not promoted yet; use abort")
    if to is not None:
        return _rollback_rotation(
            name, rotation, _window_key(name, versions, to), versions, now, reason, auto
        )
    if rotation.kind is RotationKind.EMERGENCY:
        raise UsageError(f"{name}: the previous key was compromised (emergency); refusing")
    if rotation.kind is RotationKind.ROLLBACK:
        raise UsageError(f"{name}: the latest rotation is already a rollback")
    earlier = find_version(versions, rotation.old_version_id)
    current = current_version(versions)
    if earlier is None:
        raise UsageError(f"{name}: there is no earlier key to roll back to")
    if earlier.state is VersionState.DESTROYED:
        raise UsageError(f"{name}: v{earlier.number} is destroyed; cannot roll back")
    if earlier.compromised:
        raise UsageError(f"{name}: v{earlier.number} is compromised; refusing")
    retired = earlier.retired if earlier.state is VersionState.RETIRED else None
    if retain is not None and retired is not None and now >= retired + retain:
        raise UsageError(
            f"{name}: v{earlier.number} was retired {format_duration(now - retired)} ago, "
            f"past its retention ({format_duration(retain)}): it is due for destruction "
            "and may be deleted at the issuer already; cannot roll back"
        )
    if current is None or current.version_id != rotation.new_version_id:
        raise UsageError(f"{name}: the current key is not the one rotation {rotation.id} made")
    return _rollback_rotation(name, rotation, earlier, versions, now, reason, auto)


def numbered(name: str, versions: Sequence[Version], number: int) -> Version:
    """Version ``number`` of credential ``name``; UsageError naming the ones it has."""
    found = next((v for v in versions if v.number == number), None)
    if found is None:
        known = ", ".join(f"v{v.number}" for v in sorted(versions, key=lambda v: v.number))
        raise UsageError(f"{name}: no version v{number} (it has {known})")
    return found


def _window_key(name: str, versions: Sequence[Version], number: int) -> Version:
    """The previous key numbered ``number``, for ``rollback --to``; UsageError else."""
    found = numbered(name, versions, number)
    if found.state is VersionState.CURRENT:
        raise UsageError(f"{name}: v{number} is current already")
    if found.state is not VersionState.PREVIOUS or found.compromised:
        why = "compromised" if found.compromised else found.state.value
        raise UsageError(
            f"{name}: v{number} is {why}: --to takes a key of the window (a previous key)"
        )
    return found


def _rollback_rotation(
    name: str,
    rotation: Rotation,
    earlier: Version,
    versions: Sequence[Version],
    now: datetime,
    reason: str,
    auto: bool,
) -> Rotation:
    """The rollback rotation that re-promotes ``earlier`` over the current key."""
    current = current_version(versions)
    if current is None:
        raise UsageError(f"{name}: there is no current key to roll back from")
    why = reason or ("automatic rollback" if auto else "rolled back by the operator")
    back = Rotation(
        id=new_rotation_id(),
        credential=name,
        kind=RotationKind.ROLLBACK,
        phase=Phase.ISSUE,
        started=now,
        new_version_id=earlier.version_id,
        new_version_number=earlier.number,
        old_version_id=current.version_id,
        # A previous key is still accepted everywhere; a retired one must propagate again.
        propagation=timedelta(0) if earlier.state is VersionState.PREVIOUS else None,
        overlap=timedelta(0) if auto else None,
        reason=why,
        force_retire=auto,
        supersedes=rotation.id,
    )
    detail = f"rolling back to v{earlier.number} ({earlier.key_id}): {why}"
    return back.advance(Phase.ISSUE, now, detail=detail)


@dataclass(frozen=True)
class Adoption:
    """How drift adoption makes the client's key current, in this order: record
    ``target`` (when ``new``: a version the store does not have yet), write ``record``
    (None: the rotation in flight already is the adoption), then promote ``target``
    over ``replaced`` (None: a secret rotatectl did not create, taken over as its first
    version). The replaced key then goes through the overlap and the usage gate like
    the old key of any rotation."""

    target: Version
    replaced: Version | None
    new: bool
    record: Rotation | None


def plan_adoption(
    name: str,
    rotation: Rotation | None,
    versions: Sequence[Version],
    holds: Callable[[Version], bool],
    fingerprint: str,
    key_id: str,
    now: datetime,
    field: str = "",
) -> Adoption | None:
    """Adopt the value clients read (``holds(v)``: whether version ``v`` is that value)
    as a new current version; None when the current version holds it (or there is no
    current version yet: a first rotation in flight). ``fingerprint``/``key_id``: the
    value's key's, for a new version; ``field``: the JSON field the key is in ("": bare).

    A pending or previous version holding the value is promoted instead of a new one
    (the client was pointed at it by hand; or an interrupted adoption resumes). A
    secret rotatectl has no version of (it did not create it) is taken over as it is:
    its value becomes v1, current, with no rotation record; the first rotation after
    it has the normal phases. UsageError when another rotation is in flight, or the
    value is a retired, destroyed or compromised key, or its key id is an accepted
    key's.
    """
    if not versions:
        first = Version(
            version_id=str(uuid.uuid4()),
            number=1,
            key_id=key_id,
            fingerprint=fingerprint,
            state=VersionState.PENDING,
            created=now,
            field=field,
        )
        return Adoption(first, None, new=True, record=None)
    current = current_version(versions)
    if current is None or holds(current):
        return None
    held = next((v for v in versions if v is not current and holds(v)), None)
    if held is not None and (not held.state.accepted or held.compromised):
        why = "compromised" if held.compromised else held.state.value
        raise UsageError(
            f"{name}: clients read v{held.number} ({held.key_id}), which is {why}; it cannot "
            "be adopted (`check --restore`, or `rotatectl emergency`)"
        )
    if rotation is not None and not rotation.phase.terminal:
        if held is not None and held.version_id == rotation.new_version_id:
            # That rotation's own key: its promotion (an adoption interrupted after its
            # record, or a promotion done by hand ahead of the rotation).
            return Adoption(held, current, new=False, record=None)
        raise UsageError(
            f"{name}: rotation {rotation.id} is in flight ({rotation.phase.value}); let it "
            "finish (`rotatectl run`) or abort it before adopting the store's value, "
            "or put rotatectl's back with `check --restore`"
        )
    if held is None:
        clash = next((v for v in versions if v.state.accepted and v.key_id == key_id), None)
        if clash is not None:
            raise UsageError(
                f"{name}: the store's value has key id {key_id}, which v{clash.number} already "
                "uses; it cannot be adopted (`check --restore`, or `rotatectl emergency`)"
            )
        held = Version(
            version_id=str(uuid.uuid4()),
            number=max(v.number for v in versions) + 1,
            key_id=key_id,
            fingerprint=fingerprint,
            state=VersionState.PENDING,
            created=now,
            scopes=current.scopes,
            field=field,
        )
        new = True
    else:
        new = False
    detail = (
        f"drift adopted: clients read v{held.number} ({held.key_id}); v{current.number} "
        f"({current.key_id}) stays accepted for the overlap and the usage gate"
    )
    record = Rotation(
        id=new_rotation_id(),
        credential=name,
        kind=RotationKind.MANUAL,
        phase=Phase.OVERLAP,
        started=now,
        new_version_id=held.version_id,
        new_version_number=held.number,
        old_version_id=current.version_id,
        published=now,
        promoted=now,
        reason="drift adopted",
    ).advance(Phase.OVERLAP, now, detail=detail)
    return Adoption(held, current, new=new, record=record)


def plan_emergency(
    name: str,
    rotation: Rotation | None,
    versions: Sequence[Version],
    now: datetime,
    reason: str,
    propagation: timedelta | None = None,
    keep_previous: int = 1,
    field: str | None = None,
) -> Rotation:
    """An emergency rotation: a new key promoted at once, the current (compromised)
    key retired at once. It supersedes a rotation in flight: that rotation's new
    key (published or not yet) is retired with the current one, and so is a
    previous key still accepted, unless the credential keeps a rolling window
    (``keep_previous`` > 1): its keys were not the one that leaked, and the clients
    that refresh rarely rely on them, so they stay (the detail says which).
    UsageError when there is no current key, or ``field`` is not its format (see
    :func:`plan_start`)."""
    current = current_version(versions)
    if current is None:
        raise UsageError(f"{name}: no current key to replace")
    also: list[str] = []
    supersedes = None
    if rotation is not None and not rotation.phase.terminal:
        supersedes = rotation.id
        if rotation.new_version_id != current.version_id:
            also.append(rotation.new_version_id)
    kept: list[Version] = []
    for v in versions:
        if v.state is VersionState.PREVIOUS and keep_previous > 1:
            kept.append(v)
        elif v.state in (VersionState.PENDING, VersionState.PREVIOUS) and v.version_id not in also:
            also.append(v.version_id)
    detail = f"emergency rotation: replacing v{current.number} ({current.key_id})"
    if supersedes:
        detail += f"; supersedes rotation {supersedes}"
    if kept:
        shown = ", ".join(f"v{v.number}" for v in sorted(kept, key=lambda v: -v.number))
        detail += (
            f"; only the compromised key is retired: {shown} stay accepted in the window "
            f"(keep_previous = {keep_previous})"
        )
    return replace(
        plan_start(
            name,
            RotationKind.EMERGENCY,
            None,  # an emergency is never held by earlier failures
            versions,
            now,
            reason,
            propagation=propagation if propagation is not None else timedelta(0),
            overlap=timedelta(0),
            detail=detail,
            field=field,
        ),
        force_retire=True,
        supersedes=supersedes,
        also_retire=tuple(also),
    )


# -- notices -----------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """Something people must be told: an event kind, how loud, and what to say."""

    kind: str
    severity: str
    message: str
    version: Version | None = None
    attention: bool = False


def _told_recently(rotation: Rotation, kinds: tuple[str, ...], now: datetime) -> bool:
    told = [e.at for e in rotation.history if e.what in kinds]
    return bool(told) and now - told[-1] < REMINDER_INTERVAL


def laggard_notice(
    rotation: Rotation, versions: Sequence[Version], usage: KeyUsage | None, now: datetime
) -> Notice | None:
    """Name the clients still using the old key: once, then a reminder per
    REMINDER_INTERVAL (the engine keeps the last notice in the rotation record)."""
    old = find_version(versions, rotation.old_version_id)
    if old is None or usage is None or usage.status is not UsageStatus.SEEN:
        return None
    if _told_recently(rotation, ("laggards", "reminder"), now):
        return None
    kind = (
        "reminder"
        if any(e.what in ("laggards", "reminder") for e in rotation.history)
        else ("laggards")
    )
    who = ", ".join(usage.clients) or "unknown clients"
    message = f"v{old.number} ({old.key_id}) is still used by {who} ({usage.count} requests)"
    return Notice(kind, "warning", message, old)


PERSON_EVENTS = ("person-needed", "person-reminder", "person-overdue")


def person_notice(
    rotation: Rotation,
    ask: str,
    instructions: str,
    now: datetime,
    remind_every: timedelta | None,
    deadline: timedelta | None,
) -> Notice | None:
    """What to tell the person a rotation waits for (``ask``: "supply v3"): the
    instructions the first time (``person-needed``); once ``deadline`` has passed since
    then, one critical ``person-overdue``; else a ``person-reminder`` each
    ``remind_every`` (none when None). None when they were told recently enough.
    The rotation record keeps what was said, so cron repeats nothing early."""
    told = [e for e in rotation.history if e.what in PERSON_EVENTS and _asks(e.detail, ask)]
    message = f"{ask}: {instructions}"
    if not told:
        return Notice("person-needed", "warning", message, attention=True)
    since = told[0].at
    overdue = any(e.what == "person-overdue" for e in told)
    if deadline is not None and not overdue and now - since >= deadline:
        late = f"{ask}: waited since {since:%Y-%m-%d %H:%M}Z, past its deadline: {instructions}"
        return Notice("person-overdue", "critical", late, attention=True)
    if remind_every is not None and now - told[-1].at >= remind_every:
        return Notice("person-reminder", "warning", message, attention=True)
    return None


def person_waiting(rotation: Rotation | None) -> tuple[str, datetime, str] | None:
    """The person an in-flight rotation waits for now, as (ask, since, instructions):
    its latest event is a person notice (any later step means the person acted)."""
    if rotation is None or rotation.phase.terminal or not rotation.history:
        return None
    last = rotation.history[-1]
    if last.what not in PERSON_EVENTS:
        return None
    ask, _, instructions = last.detail.partition(": ")
    first = next(e.at for e in rotation.history if e.what in PERSON_EVENTS and _asks(e.detail, ask))
    return ask, first, instructions


def _asks(detail: str, ask: str) -> bool:
    return detail.partition(": ")[0] == ask


def still_used_notice(rotation: Rotation, action: Action, now: datetime) -> Notice | None:
    """The old key is still used past max_overlap and the policy waits: say so once
    per REMINDER_INTERVAL, not on every cron run."""
    if not action.attention or _told_recently(rotation, ("still-used",), now):
        return None
    return Notice("still-used", "warning", action.reason, attention=True)


def retired_key_alarms(
    rotation: Rotation | None, versions: Sequence[Version], seen: dict[str, KeyUsage]
) -> list[Notice]:
    """A retired key presented after its retirement: a forgotten client, or a leaked
    key tried (critical when it was compromised)."""
    compromised = set(rotation.leaked) if rotation is not None else set()
    alarms = []
    for v in versions:
        usage = seen.get(v.key_id)
        if v.state is not VersionState.RETIRED or v.retired is None or usage is None:
            continue
        if usage.last_seen is None or usage.last_seen <= v.retired:
            continue
        leaked = v.version_id in compromised or v.compromised
        who = f" by {', '.join(usage.clients)}" if usage.clients else ""
        message = (
            f"{'compromised' if leaked else 'retired'} key v{v.number} ({v.key_id}) was "
            f"presented {usage.count} times since its retirement{who}"
        )
        alarms.append(
            Notice(
                "retired-key-presented",
                "critical" if leaked else "warning",
                message,
                v,
                attention=True,
            )
        )
    return alarms
