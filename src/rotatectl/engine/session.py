"""The session loop: one credential under its lease, driven by the pure machine.

:class:`Runner` is the entry point of every command that changes a
credential; :class:`Session` holds the lease (:mod:`.lease`), reads the
state, asks the machine what to do, executes the step (:mod:`.steps`) and asks
again, until the machine says wait, idle or attention. It persists the intent
before each side effect and the result after it; effects (:mod:`.effects`) are
audited before they are reported. Every exception while handling the
credential becomes its result — failed, locked or pre-empted — never an
exception out of the session, except UsageError (the command was wrong).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from ..errors import (
    ConflictError,
    LockedError,
    PersonNeeded,
    ProbeError,
    RotatectlError,
    UsageError,
)
from ..hooks import run_hook
from ..machine import (
    Action,
    ActionKind,
    Notice,
    current_version,
    drift_action,
    expiry_action,
    find_version,
    gated_version,
    laggard_notice,
    next_action,
    person_notice,
    person_waiting,
    plan_abort,
    plan_emergency,
    plan_overrides,
    plan_rollback,
    plan_start,
    retired_key_alarms,
    still_used_notice,
)
from ..model import (
    KeyUsage,
    Outcome,
    Phase,
    Result,
    Rotation,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
)
from ..ports import Clock, Target, read_state
from .boundaries import BOUNDARIES, env_boundary
from .effects import AuditRefused, Effects, HookRunner
from .lease import LeaseHolder, default_holder
from .steps import STEPS, Step

if TYPE_CHECKING:
    from ..audit import AuditLog

__all__ = ["BOUNDARIES", "Runner", "Session", "StartRequest", "default_holder", "env_boundary"]

T = TypeVar("T")

_MAX_STEPS = 32  # a rotation has fewer steps than this; more means a bug, not progress

Intervention = Callable[[Rotation | None, list[Version], datetime], Rotation]

# Steps whose side effect is audited as an intent first (the event follows it).
_INTENTS = {
    ActionKind.PROMOTE: "promote",
    ActionKind.RETIRE: "retire",
    ActionKind.DESTROY: "destroy",
    ActionKind.ABORT: "abort",
}


@dataclass(frozen=True)
class StartRequest:
    """An operator's ``rotate``: the kind, and overrides of the policy."""

    kind: RotationKind
    propagation: timedelta | None = None
    overlap: timedelta | None = None
    reason: str = ""


class Preempted(RotatectlError):
    """An emergency took this session's lease: it writes nothing more."""


class Runner:
    """Drives rotations. Adapters come in through :class:`Target`, time through
    ``clock`` and hooks through ``run_hooks`` (fakes are passed in, never patched)."""

    def __init__(
        self,
        clock: Clock,
        *,
        holder: str | None = None,
        lock_ttl: timedelta = timedelta(minutes=2),
        boundary: Callable[[str], None] | None = None,
        retry_attempts: int = 4,
        retry_max_delay: float = 30.0,
        audit: AuditLog | None = None,
        run_hooks: HookRunner = run_hook,
    ) -> None:
        self.clock = clock
        self.audit = audit
        self.holder = holder or default_holder()
        self.lock_ttl = lock_ttl
        self.boundary = boundary or env_boundary()
        self.retry_attempts = retry_attempts
        self.retry_max_delay = retry_max_delay
        self.run_hooks = run_hooks

    # -- entry points -------------------------------------------------------

    def check_audit(self) -> None:
        """Raise AuditError when the audit log could not take a record now (permissions,
        a read-only file system): the entry points that act call this before any work,
        so an action its first record would refuse never starts. Not for an emergency,
        which goes on without the log."""
        if self.audit is not None:
            self.audit.check_writable()

    def rotate(
        self,
        target: Target,
        *,
        kind: RotationKind = RotationKind.MANUAL,
        propagation: timedelta | None = None,
        overlap: timedelta | None = None,
        reason: str = "",
        dry_run: bool = False,
    ) -> Result:
        """Start a rotation, or continue the one in flight (applying the overrides
        to it), and advance it as far as now allows. UsageError for an override
        that no longer applies or exceeds max_overlap."""
        start = StartRequest(kind, propagation, overlap, reason)
        if dry_run:
            return self.plan(target, start=start)
        self.check_audit()
        with self.session(target) as session:
            return session.drive(start=start)

    def advance(
        self, target: Target, *, start_if_due: bool = True, dry_run: bool = False
    ) -> Result:
        """The cron step: advance an in-flight rotation, start one if due (outside
        its backoff and window), destroy what expired, report drift."""
        if dry_run:
            return self.plan(target, start_if_due=start_if_due)
        with self.session(target) as session:
            return session.drive(start_if_due=start_if_due)

    def abort(self, target: Target, reason: str = "") -> Result:
        """Cancel the in-flight rotation before promotion and revoke its new key.

        Raises UsageError when nothing is in flight or the new key is current already,
        AuditError (before anything changes) when the audit log cannot be written.
        """
        self.check_audit()
        with self.session(target) as session:
            return session.drive(
                intervene=lambda r, v, now: plan_abort(target.name, r, v, now, reason)
            )

    def rollback(self, target: Target, reason: str = "", to: int | None = None) -> Result:
        """Re-promote the key the latest rotation replaced (``to``: the previous key of
        that number, any key of a rolling window); the key it demotes keeps a full
        overlap. UsageError when it is destroyed, compromised or past its retention
        (due for destruction), not a previous key,
        or the latest rotation has not promoted yet (abort it instead); AuditError
        (before anything changes) when the audit log cannot be written."""
        self.check_audit()
        with self.session(target) as session:
            return session.drive(
                intervene=lambda r, v, now: plan_rollback(
                    target.name, r, v, now, reason, to=to, retain=target.policy.retain
                )
            )

    def emergency(
        self,
        target: Target,
        reason: str,
        propagation: timedelta | None = None,
        started: float | None = None,
    ) -> Result:
        """Replace the current (compromised) key now and retire it at once, pre-empting
        any holder of the lease. The result's ``revoked_after`` is the wall time from
        ``started`` (a ``time.monotonic()`` value; default: this call) to the old
        key's retirement."""
        started = time.monotonic() if started is None else started
        with self.session(target, emergency=True) as session:
            result = session.drive(
                intervene=lambda r, v, now: plan_emergency(
                    target.name,
                    r,
                    v,
                    now,
                    reason,
                    propagation,
                    target.policy.keep_previous,
                    field=target.secret_format.field,
                )
            )
            if session.retired:
                result.revoked_after = time.monotonic() - started
                session.incident(result, reason)
        return result

    def usage_report(self, target: Target) -> tuple[list[tuple[Version, KeyUsage]], Action]:
        """What the probe sees for each version that can still be presented, and
        what the usage gate would decide now. Read-only: no lock is taken."""
        rotation, _ = target.store.load_rotation(target.path)
        versions = target.store.versions(target.path)
        shown = [v for v in versions if v.state is not VersionState.DESTROYED]
        now = self.clock.now()
        since = now - max(target.policy.usage_quiet, target.policy.max_overlap)
        try:
            usage = target.probe.usage(target.name, [v.key_id for v in shown], since, now)
        except ProbeError as exc:
            usage = {v.key_id: KeyUsage(UsageStatus.UNKNOWN, detail=str(exc)) for v in shown}
        rows = [(v, usage.get(v.key_id, KeyUsage(UsageStatus.UNKNOWN))) for v in shown]
        old = gated_version(rotation, versions, target.policy) if rotation else None
        new = find_version(versions, rotation.new_version_id) if rotation else None
        action = next_action(
            rotation,
            versions,
            target.policy,
            now,
            usage.get(old.key_id) if old else None,
            new_usage=usage.get(new.key_id) if new else None,
            requires_test=target.pretest is not None,
        )
        return rows, action

    def plan(
        self, target: Target, *, start: StartRequest | None = None, start_if_due: bool = False
    ) -> Result:
        """What the next step would be, without a lock and without changing anything."""
        try:
            rotation, _ = target.store.load_rotation(target.path)
            versions = target.store.versions(target.path)
        except RotatectlError as exc:
            return Result(target.name, Outcome.FAILED, f"plan: {exc}")
        now = self.clock.now()
        action = next_action(rotation, versions, target.policy, now, start_if_due=start_if_due)
        in_flight = rotation is not None and not rotation.phase.terminal
        if start is not None and not in_flight:
            action = Action(ActionKind.START, "asked for")
        result = Result(
            target.name, Outcome.PLANNED, phase=rotation.phase if in_flight and rotation else None
        )
        result.rotation_id = rotation.id if in_flight and rotation else None
        result.message = _describe_plan(action, target, versions, start)
        result.until = action.until
        return result

    @contextlib.contextmanager
    def session(self, target: Target, *, emergency: bool = False) -> Iterator[Session]:
        """Hold the credential's lease for the duration of the block.

        Yields a :class:`Session` whose ``drive`` returns a LOCKED (or FAILED)
        result when the lease could not be taken. ``emergency``: take it from
        any holder, and let no audit failure stop the session.
        """
        session = Session(self, target, emergency=emergency)
        try:
            session.acquire()
            yield session
        finally:
            session.release()

    def retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn``, retrying retryable rotatectl errors with bounded backoff and jitter."""
        from ..retry import retry_call  # tenacity: imported when a store is first called

        return retry_call(
            fn, attempts=self.retry_attempts, max_delay=self.retry_max_delay, sleep=self.clock.sleep
        )


class Session:
    """One credential under its lease. Created by :meth:`Runner.session`."""

    def __init__(self, runner: Runner, target: Target, *, emergency: bool = False) -> None:
        self.runner = runner
        self.target = target
        self.emergency = emergency
        self.effects = Effects(
            target, runner.clock, runner.audit, run_hooks=runner.run_hooks, lenient=emergency
        )
        self.lease = LeaseHolder(
            target.store, target.path, runner.holder, runner.lock_ttl, runner.clock
        )
        self.unavailable: Result | None = None  # why the lease could not be taken
        self.lock_warning = ""
        self.driving: str | None = None  # the rotation this session started or continues
        self.retired: list[Version] = []  # versions this session retired
        self.promoted: Version | None = None  # the version this session promoted
        self.step = "read"

    # -- lease -------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease; a failure becomes the result every ``drive`` returns."""
        try:
            self.lock_warning = self.lease.acquire(preempt=self.emergency)
        except LockedError as exc:
            self.unavailable = Result(
                self.target.name, Outcome.LOCKED, f"held by {exc.holder} since {exc.since}"
            )
        except RotatectlError as exc:
            self.unavailable = Result(self.target.name, Outcome.FAILED, f"lock: {exc}")

    def renew(self) -> bool:
        """Extend the lease; call at least every ``lock_ttl / 3`` while waiting.
        False when an emergency took it: the session is pre-empted."""
        return self.lease.renew()

    def release(self) -> None:
        self.lease.release()

    @property
    def preempted(self) -> bool:
        return self.lease.lost

    def _preempted_result(self, result: Result) -> Result:
        result.outcome = Outcome.PREEMPTED
        result.message = (
            f"pre-empted by {self._preempted_by()}; this run stopped and wrote nothing more"
        )
        return result

    def _preempted_by(self) -> str:
        """The emergency that took the lease, as the store's records name it."""
        t = self.target
        with contextlib.suppress(RotatectlError):
            rotation, _ = t.store.load_rotation(t.path)
            records = [*t.store.rotation_history(t.path), rotation]
            for record in reversed(records):
                if record is not None and record.kind is RotationKind.EMERGENCY:
                    reason = f" ({record.reason})" if record.reason else ""
                    return f"emergency rotation {record.id}{reason}"
        return "emergency (another holder took the lease)"

    # -- driving -----------------------------------------------------------

    def drive(
        self,
        *,
        start: StartRequest | None = None,
        start_if_due: bool = False,
        intervene: Intervention | None = None,
    ) -> Result:
        """Execute actions until the machine says wait, idle or attention.

        ``start``: an operator's rotate — start a rotation, or continue (never
        both) the one in flight with its overrides applied. ``start_if_due``:
        run's — start one when due, outside backoff and window. ``intervene``
        builds a replacement record (abort, rollback, emergency) first.
        Raises only UsageError; everything else is the result.
        """
        t = self.target
        if self.unavailable is not None:
            return Result(t.name, self.unavailable.outcome, self.unavailable.message)
        result = Result(t.name, Outcome.IDLE)
        # A session that drives again (rotate --wait waking up) first proves it still
        # holds the lease: an emergency may have taken it, and someone else may have
        # started a rotation since, which this session must not touch.
        if self.preempted or (self.driving is not None and not self.emergency and not self.renew()):
            return self._preempted_result(result)
        if self.lock_warning:
            result.warnings.append(self.lock_warning)
            self.lock_warning = ""
        try:
            return self._loop(result, start, start_if_due, intervene)
        except UsageError:
            raise
        except Preempted:
            return self._preempted_result(result)
        except LockedError as exc:
            result.outcome = Outcome.LOCKED
            result.message = f"held by {exc.holder} since {exc.since}"
            return result
        except ConflictError as exc:
            # A compare-and-set lost: to an emergency that took the lease, or a
            # change behind our back (the step's own message says which).
            if not self.renew():
                return self._preempted_result(result)
            return self._fail(result, f"{self.step}: {exc}")
        except AuditRefused as exc:
            return self._fail(result, f"{self.step}: {exc}", tell=False)
        except PersonNeeded as exc:
            return self._wait_for_person(result, exc)
        except RotatectlError as exc:
            return self._fail(result, f"{self.step}: {exc}")
        except Exception as exc:  # a plugin's bug: still this credential's failure
            return self._fail(result, f"{self.step}: internal error: {type(exc).__name__}: {exc}")

    def _loop(
        self,
        result: Result,
        start: StartRequest | None,
        start_if_due: bool,
        intervene: Intervention | None,
    ) -> Result:
        t, runner = self.target, self.runner
        usage: dict[str, KeyUsage] | None = None
        first = True
        # Drift is checked once a drive: before a start, or where it settles. A
        # rotation started here was checked moments ago under this lease, and since
        # then only this session wrote.
        drift_checked = False
        for _ in range(_MAX_STEPS):
            self.step = "read"
            versions, rotation, revision = runner.retrying(lambda: read_state(t.store, t.path))
            now = runner.clock.now()
            self._check_not_superseded(rotation)
            if intervene is not None:
                self.step = "plan"
                replacement = intervene(rotation, versions, now)
                intervene = None
                self._begin(result, replacement, revision)
                continue
            in_flight = rotation is not None and not rotation.phase.terminal
            if first:
                first = False
                if in_flight and rotation is not None:
                    self.driving = rotation.id
                    if start is not None:
                        # One command, one intent: continue it, with the overrides applied.
                        rotation, revision = self._override(
                            result, start, rotation, revision, versions, now
                        )
                        start = None
            # Start at most one rotation a call, and none after one finished in it.
            may_start = self.driving is None and not result.finished
            action = self._decide(rotation, versions, now, usage, start_if_due and may_start)
            if start is not None and not in_flight and may_start:
                action = Action(ActionKind.START, start.reason or f"{start.kind.value} rotation")
            if rotation is not None and in_flight:
                result.phase, result.rotation_id = rotation.phase, rotation.id
            self.step = action.kind.value
            if action.kind in (ActionKind.WAIT, ActionKind.IDLE, ActionKind.ATTENTION):
                if start_if_due:
                    if not drift_checked:
                        action = self._drift_attention(action, versions)
                    action = expiry_action(action, versions, self.target.policy, now)
                return self._settle(result, action, rotation, revision, usage, versions, now)
            if action.kind is ActionKind.START:
                refused = self._drift_attention(action, versions)
                drift_checked = True
                if refused.kind is ActionKind.ATTENTION:
                    return self._settle(result, refused, rotation, revision, usage, versions, now)
                request = start or StartRequest(RotationKind.SCHEDULED, reason=action.reason)
                self._start(result, request, rotation, versions, revision, now)
                start = None
                continue
            step = Step(
                target=t,
                clock=runner.clock,
                effects=self.effects,
                retrying=runner.retrying,
                boundary=runner.boundary,
                save=self._save,
                result=result,
                action=action,
                rotation=rotation,
                revision=revision,
                versions=versions,
                now=now,
            )
            self._audit_intent(result, action, rotation, versions)
            STEPS[action.kind](step)
            self.retired += step.retired
            self.promoted = step.promoted or self.promoted
            if step.driving is not None:
                self.driving = step.driving
            usage = step.usage
            result.phase = None
        raise RotatectlError(f"no progress after {_MAX_STEPS} steps")

    def _audit_intent(
        self,
        result: Result,
        action: Action,
        rotation: Rotation | None,
        versions: Sequence[Version],
    ) -> None:
        """The audit record before a side effect clients or the issuer see (promote,
        retire, destroy, abort): a log that cannot be written stops it here."""
        what = _INTENTS.get(action.kind)
        if what is None:
            return
        subject = action.version_id  # a destroy names its version
        if rotation is not None and subject is None:
            if action.kind is ActionKind.RETIRE:
                leaving = gated_version(rotation, versions, self.target.policy)
                subject = leaving.version_id if leaving else rotation.old_version_id
            else:
                subject = rotation.new_version_id
        self.effects.event(
            result,
            what,
            rotation=rotation,
            version=find_version(versions, subject),
            message=action.reason,
            notify=False,
        )

    def _check_not_superseded(self, rotation: Rotation | None) -> None:
        """Stop before any side effect once an emergency replaced the rotation this
        session drives (its lease may not have been renewed since)."""
        if (
            not self.emergency
            and self.driving is not None
            and rotation is not None
            and rotation.id != self.driving
            and rotation.kind is RotationKind.EMERGENCY
        ):
            self.lease.lost = True
            raise Preempted(f"rotation {self.driving} was superseded by {rotation.id}")

    def _decide(
        self,
        rotation: Rotation | None,
        versions: Sequence[Version],
        now: datetime,
        usage: dict[str, KeyUsage] | None,
        start_if_due: bool,
    ) -> Action:
        old = new = None
        if rotation is not None and usage is not None:
            old_v = gated_version(rotation, versions, self.target.policy)
            new_v = find_version(versions, rotation.new_version_id)
            old = usage.get(old_v.key_id) if old_v else None
            new = usage.get(new_v.key_id) if new_v else None
            if old is None and old_v is not None:
                old = KeyUsage(UsageStatus.UNKNOWN, detail="probe gave no answer")
        return next_action(
            rotation,
            versions,
            self.target.policy,
            now,
            old,
            new_usage=new,
            start_if_due=start_if_due,
            requires_test=self.target.pretest is not None,
        )

    def _drift_attention(self, action: Action, versions: Sequence[Version]) -> Action:
        """``action``, or ATTENTION when the store drifted (cron must hear of it, and
        no rotation starts until the operator adopts or restores)."""
        from ..drift import detect

        problems = detect(self.target, versions)
        return drift_action(self.target.name, problems) if problems else action

    # -- records -----------------------------------------------------------

    def _save(self, rotation: Rotation, revision: int) -> int:
        t = self.target
        return self.runner.retrying(lambda: t.store.save_rotation(t.path, rotation, revision))

    def _begin(self, result: Result, rotation: Rotation, revision: int) -> None:
        """Write a new rotation record (an intervention's, or a start), audited first."""
        result.rotation_id = rotation.id
        kind = "abort" if rotation.phase is Phase.ABORT else rotation.kind.value
        # The audit record comes before the record that makes anything happen.
        self.effects.event(
            result, f"{kind}-requested", rotation=rotation, message=rotation.reason, notify=False
        )
        self._save(rotation, revision)
        self.driving = rotation.id
        self.runner.boundary("after-start")
        result.steps.append(rotation.history[-1].detail)

    def _start(
        self,
        result: Result,
        request: StartRequest,
        latest: Rotation | None,
        versions: Sequence[Version],
        revision: int,
        now: datetime,
    ) -> None:
        rotation = plan_start(
            self.target.name,
            request.kind,
            latest,
            versions,
            now,
            request.reason,
            propagation=request.propagation,
            overlap=request.overlap,
            field=self.target.secret_format.field,
        )
        self.effects.event(result, "started", rotation=rotation, message=request.reason)
        self._save(rotation, revision)
        self.driving = rotation.id
        self.runner.boundary("after-start")
        result.rotation_id = rotation.id
        result.steps.append(
            f"started {request.kind.value} rotation {rotation.id} (v{rotation.new_version_number})"
        )

    def _override(
        self,
        result: Result,
        start: StartRequest,
        rotation: Rotation,
        revision: int,
        versions: Sequence[Version],
        now: datetime,
    ) -> tuple[Rotation, int]:
        changed = plan_overrides(
            self.target.name,
            rotation,
            versions,
            self.target.policy,
            now,
            propagation=start.propagation,
            overlap=start.overlap,
        )
        if changed is None:
            return rotation, revision
        self.effects.event(result, "override", rotation=changed, message=changed.history[-1].detail)
        revision = self._save(changed, revision)
        result.steps.append(f"rotation {rotation.id}: {changed.history[-1].detail}")
        return changed, revision

    def _fail(self, result: Result, message: str, *, tell: bool = True) -> Result:
        """This credential failed: say so once per distinct failure (the in-flight
        record keeps the last error, so cron does not repeat the same alarm)."""
        result.outcome = Outcome.FAILED
        result.message = message
        if self.preempted:
            return result
        first_time = self._record_error(message)
        if tell and first_time:
            with contextlib.suppress(RotatectlError):
                self.effects.event(result, "failed", severity="critical", message=message)
        if first_time:
            self.effects.hook(result, "on_failure", {"error": message})
        return result

    def _wait_for_person(self, result: Result, need: PersonNeeded) -> Result:
        """The issuer waits for a person: the rotation stays where it is, ``run``
        returns at once (attention), and the person is told what to do, then reminded,
        then escalated past the deadline (:func:`~rotatectl.machine.person_notice`;
        the rotation record keeps what was said)."""
        t, now = self.target, self.runner.clock.now()
        result.outcome = Outcome.ATTENTION
        result.attention = True
        who = need.owner or "a person"
        rotation, revision = self.runner.retrying(lambda: t.store.load_rotation(t.path))
        if rotation is None or rotation.phase.terminal:
            result.message = f"waiting for {who}: {need.ask}: {need.instructions}"
            return result
        notice = person_notice(
            rotation, need.ask, need.instructions, now, need.remind_every, need.deadline
        )
        if notice is not None:
            rotation = rotation.noted(notice.kind, now, notice.message)
            self._save(rotation, revision)
            self.effects.event(
                result,
                notice.kind,
                severity=notice.severity,
                rotation=rotation,
                message=f"{who}: {notice.message}",
            )
        waiting = person_waiting(rotation)
        since = f" since {waiting[1]:%Y-%m-%d %H:%M}Z" if waiting else ""
        result.rotation_id, result.phase = rotation.id, rotation.phase
        result.message = f"waiting for {who}{since}: {need.ask}: {need.instructions}"
        return result

    def _record_error(self, message: str) -> bool:
        """Note the failure in the in-flight rotation record. False when the record
        already says so (the same failure, seen by an earlier run)."""
        t = self.target
        with contextlib.suppress(RotatectlError):
            rotation, revision = t.store.load_rotation(t.path)
            if rotation is not None and not rotation.phase.terminal:
                if rotation.error == message:
                    return False
                noted = rotation.noted("error", self.runner.clock.now(), message)
                t.store.save_rotation(t.path, replace(noted, error=message), revision)
        return True

    # -- settling ----------------------------------------------------------

    def _settle(
        self,
        result: Result,
        action: Action,
        rotation: Rotation | None,
        revision: int,
        usage: dict[str, KeyUsage] | None,
        versions: Sequence[Version],
        now: datetime,
    ) -> Result:
        old = gated_version(rotation, versions, self.target.policy) if rotation else None
        seen = usage.get(old.key_id) if usage is not None and old is not None else None
        result.usage = seen
        result.until = action.until
        result.message = action.reason
        result.attention = result.attention or action.attention
        if action.kind is ActionKind.ATTENTION:
            result.outcome = Outcome.ATTENTION
            self.effects.event(result, "attention", severity="warning", message=action.reason)
            return result
        if action.kind is ActionKind.WAIT:
            result.outcome = Outcome.WAITING
            if rotation is not None:
                notices = [laggard_notice(rotation, versions, seen, now)]
                notices.append(still_used_notice(rotation, action, now))
                self._tell(result, rotation, revision, [n for n in notices if n], now)
            return result
        self._watch_retired(result, rotation, versions, now)
        if rotation is not None and result.finished:
            result.rotation_id, result.phase = rotation.id, rotation.phase
            if rotation.failed:
                result.outcome = Outcome.FAILED
                result.message = (
                    f"rotation {rotation.id} failed: {rotation.failure}; its new key was revoked"
                )
                return result
            result.outcome = Outcome.DONE
            result.message = f"{rotation.kind.value} rotation {rotation.phase.value}"
            return result
        result.outcome = Outcome.IDLE
        if rotation is not None:
            result.rotation_id, result.phase = rotation.id, rotation.phase
        return result

    def _tell(
        self,
        result: Result,
        rotation: Rotation,
        revision: int,
        notices: Sequence[Notice],
        now: datetime,
    ) -> None:
        """Send notices that repeat on a schedule, keeping the last one in the record."""
        if not notices:
            return
        for notice in notices:
            rotation = rotation.noted(notice.kind, now, notice.message)
        self._save(rotation, revision)
        for notice in notices:
            self.effects.event(
                result,
                notice.kind,
                severity=notice.severity,
                rotation=rotation,
                version=notice.version,
                message=notice.message,
            )

    def _watch_retired(
        self,
        result: Result,
        rotation: Rotation | None,
        versions: Sequence[Version],
        now: datetime,
    ) -> None:
        """Alert when a retired key is still presented: a forgotten client, or a leak tried."""
        t = self.target
        retired = [v for v in versions if v.state is VersionState.RETIRED and v.retired]
        if not retired:
            return
        since = min(v.retired for v in retired if v.retired)
        try:
            seen = t.probe.usage(t.name, [v.key_id for v in retired], since, now)
        except ProbeError as exc:
            result.warnings.append(f"usage probe failed: {exc}")
            return
        for alarm in retired_key_alarms(rotation, versions, seen):
            result.warnings.append(alarm.message)
            result.attention = True
            self.effects.event(
                result,
                alarm.kind,
                severity=alarm.severity,
                version=alarm.version,
                message=alarm.message,
            )

    def incident(self, result: Result, reason: str) -> None:
        """The incident record of an emergency: who, when, why, which keys, what was
        done, how long until the compromised key stopped working."""
        self.effects.event(
            result,
            "emergency",
            severity="critical",
            message=reason,
            data={
                "actor": self.runner.holder,
                "steps": list(result.steps),
                "revoked_after_seconds": round(result.revoked_after or 0.0, 3),
                "old_key_ids": [v.key_id for v in self.retired],
                "new_key_id": self.promoted.key_id if self.promoted else None,
            },
        )


def _describe_plan(
    action: Action, target: Target, versions: Sequence[Version], start: StartRequest | None
) -> str:
    from ..durations import format_duration

    policy = target.policy
    if action.kind is ActionKind.START:
        current = current_version(versions)
        number = max((v.number for v in versions), default=0) + 1
        prop = start.propagation if start and start.propagation is not None else policy.propagation
        over = start.overlap if start and start.overlap is not None else policy.overlap
        if current is None:
            return f"would issue v{number} and make it current (first key)"
        return (
            f"would issue v{number}, publish it as pending, wait {format_duration(prop)}, "
            f"promote it, keep v{current.number} accepted for {format_duration(over)}, "
            f"then retire v{current.number} once the usage gate is quiet"
        )
    if action.kind in (ActionKind.WAIT, ActionKind.IDLE):
        when = f" until {action.until:%Y-%m-%d %H:%M:%SZ}" if action.until else ""
        return f"would wait{when}: {action.reason}"
    if action.kind is ActionKind.DESTROY:
        v = find_version(versions, action.version_id)
        return f"would destroy v{v.number if v else '?'}: {action.reason}"
    return f"would {action.kind.value}: {action.reason}"
