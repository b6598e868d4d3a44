"""The runner: executes the state machine's actions through the ports.

It is the only place that sequences side effects. For each step it persists
the intent (the rotation record's phase) before the side effect and the
result after it, checks whether the step was already done before doing it
(invariant 6), and holds the credential's lease lock throughout (invariant 5).
Errors are isolated per credential and returned as a :class:`Result`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .. import redact
from ..audit import AuditLog
from ..errors import (
    ConflictError,
    LockedError,
    NotifierError,
    OperationError,
    ProbeError,
    RotatectlError,
    UsageError,
)
from ..hooks import HookResult, run_hook
from ..machine import (
    REMINDER_INTERVAL,
    Action,
    ActionKind,
    current_version,
    find_version,
    next_action,
    watches_failed_auth,
)
from ..model import (
    Event,
    KeyUsage,
    Lease,
    Outcome,
    Phase,
    Result,
    Rotation,
    RotationEvent,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
    new_rotation_id,
)
from ..ports import Clock, Target, read_state

if TYPE_CHECKING:
    pass

T = TypeVar("T")

# The side-effect boundaries, in the order a rotation crosses them. A test hook
# may pause at any of them so that a real process can be killed there.
BOUNDARIES = (
    "after-start",
    "after-issue",
    "after-publish",
    "after-publish-record",
    "after-promote",
    "after-promote-record",
    "after-retire-intent",
    "after-disable",
    "after-retire",
    "after-retire-record",
    "after-destroy-issuer",
    "after-destroy",
)

_MAX_STEPS = 32  # a rotation has fewer steps than this; more means a bug, not progress


def default_holder() -> str:
    """``user@host:pid`` — names the lock holder for humans and for dead-holder checks."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def _holder_is_dead_here(holder: str) -> bool:
    """True if ``holder`` names a process on this host that no longer exists."""
    _, _, where = holder.rpartition("@")
    host, _, pid_text = where.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def env_boundary() -> Callable[[str], None]:
    """Test-only hook: ``ROTATECTL_TEST_PAUSE_AT=<boundary>`` pauses the process there.

    It writes ``ROTATECTL_TEST_PAUSE_FILE`` (so a test knows it arrived) and
    sleeps until killed. Pausing never changes what is written, so the hook
    cannot corrupt state; without the variable it does nothing.
    """
    target = os.environ.get("ROTATECTL_TEST_PAUSE_AT")
    if not target:
        return lambda name: None
    marker = os.environ.get("ROTATECTL_TEST_PAUSE_FILE")

    def pause(name: str) -> None:
        if name != target:
            return
        if marker:
            Path(marker).write_text(f"{os.getpid()} {name}\n")
        while True:  # until SIGKILL
            time.sleep(3600)

    return pause


class Runner:
    """Drives rotations. Adapters come in through :class:`Target`; time through ``clock``."""

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
    ) -> None:
        self.clock = clock
        self.audit = audit
        self.holder = holder or default_holder()
        self.lock_ttl = lock_ttl
        self.boundary = boundary or env_boundary()
        self.retry_attempts = retry_attempts
        self.retry_max_delay = retry_max_delay

    # -- entry points -------------------------------------------------------

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
        """Start a rotation (or continue the one in flight) and advance it as far as now allows."""
        start = StartRequest(kind, propagation, overlap, reason)
        if dry_run:
            return self.plan(target, start=start)
        with self.session(target) as session:
            return session.drive(start=start)

    def advance(
        self, target: Target, *, start_if_due: bool = True, dry_run: bool = False
    ) -> Result:
        """The cron step: advance an in-flight rotation, start one if due, destroy what expired."""
        if dry_run:
            return self.plan(target, start_if_due=start_if_due)
        with self.session(target) as session:
            return session.drive(start_if_due=start_if_due)

    def abort(self, target: Target, reason: str = "") -> Result:
        """Cancel the in-flight rotation before promotion and revoke its new key.

        Raises UsageError when nothing is in flight or the new key is current already.
        """
        with self.session(target) as session:
            return session.abort(reason)

    def rollback(self, target: Target, reason: str = "") -> Result:
        """Re-promote the key the latest rotation replaced (UsageError if impossible)."""
        with self.session(target) as session:
            return session.rollback(reason)

    def emergency(
        self,
        target: Target,
        reason: str,
        propagation: timedelta | None = None,
        started: float | None = None,
    ) -> Result:
        """Replace the current (compromised) key now and retire it at once.

        The result's ``revoked_after`` is the wall time from ``started`` (a
        ``time.monotonic()`` value; default: this call) to the old key's retirement.
        """
        started = time.monotonic() if started is None else started
        with self.session(target) as session:
            result = session.emergency(reason, propagation)
        if any(step.startswith("retired") for step in result.steps):
            result.revoked_after = time.monotonic() - started
            self._incident(target, result, reason)
        return result

    def record(
        self, result: Result, target: Target, event: Event, version: Version | None = None
    ) -> None:
        """Write ``event`` to the audit log (before anything reports it), then notify."""
        if self.audit is not None:
            try:
                self.audit.append(
                    event.kind,
                    event.credential,
                    outcome="failed" if event.kind == "failed" else "ok",
                    severity=event.severity,
                    rotation_id=event.rotation_id,
                    version=version.number if version else None,
                    key_id=event.key_id,
                    fingerprint=version.fingerprint if version else None,
                    reason=event.message or None,
                    data=event.data or None,
                )
            except OperationError as exc:
                result.warnings.append(f"audit: {exc}")
        for name, notifier in target.notifiers:
            try:
                notifier.notify(event)
            except NotifierError as exc:
                result.warnings.append(f"notifier {name} failed: {exc}")

    def _incident(self, target: Target, result: Result, reason: str) -> None:
        """The incident record: who, when, why, which key, what was done, how long."""
        event = Event(
            kind="emergency",
            credential=target.name,
            at=self.clock.now(),
            severity="critical",
            rotation_id=result.rotation_id,
            message=reason,
            data={
                "actor": self.holder,
                "steps": list(result.steps),
                "revoked_after_seconds": round(result.revoked_after or 0.0, 3),
            },
        )
        self.record(result, target, event)

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
        old = find_version(versions, rotation.old_version_id) if rotation else None
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
    def session(self, target: Target) -> Iterator[Session]:
        """Hold the credential's lease lock for the duration of the block.

        Yields a :class:`Session` whose ``drive`` returns a LOCKED result when
        another run holds the lock.
        """
        session = Session(self, target)
        try:
            session.acquire()
            yield session
        finally:
            session.release()

    # -- helpers used by Session -------------------------------------------

    def retrying(self, fn: Callable[[], T]) -> T:
        """Call ``fn``, retrying retryable rotatectl errors with bounded backoff and jitter."""
        from ..retry import retry_call  # tenacity: imported when a store is first called

        return retry_call(
            fn, attempts=self.retry_attempts, max_delay=self.retry_max_delay, sleep=self.clock.sleep
        )


@dataclass(frozen=True)
class StartRequest:
    kind: RotationKind
    propagation: timedelta | None = None
    overlap: timedelta | None = None
    reason: str = ""


class Session:
    """One credential under lock. Created by :meth:`Runner.session`."""

    def __init__(self, runner: Runner, target: Target) -> None:
        self.runner = runner
        self.target = target
        self.lease: Lease | None = None
        self.locked_by: LockedError | None = None
        self.lock_warning = ""

    # -- lock --------------------------------------------------------------

    def acquire(self) -> None:
        store, path, now = self.target.store, self.target.path, self.runner.clock.now()
        try:
            self.lease = store.acquire_lock(path, self.runner.holder, self.runner.lock_ttl, now)
        except LockedError as exc:
            if exc.token is None or not _holder_is_dead_here(exc.holder):
                self.locked_by = LockedError(self.target.name, exc.holder, exc.since, exc.token)
                return
            # The holder was killed on this very host: waiting out its lease helps nobody.
            self.lease = store.acquire_lock(
                path, self.runner.holder, self.runner.lock_ttl, now, steal_token=exc.token
            )
            self.lock_warning = f"took over the lock of {exc.holder}, which is no longer running"

    def renew(self) -> None:
        """Extend the lease; call at least every ``lock_ttl / 3`` while waiting."""
        if self.lease is not None:
            self.lease = self.target.store.renew_lock(
                self.lease, self.runner.lock_ttl, self.runner.clock.now()
            )

    def release(self) -> None:
        if self.lease is None:
            return
        lease, self.lease = self.lease, None
        # Losing the lease on release means someone took it over; nothing to undo.
        with contextlib.suppress(RotatectlError):
            self.target.store.release_lock(lease)

    # -- operator commands ---------------------------------------------------

    def abort(self, reason: str) -> Result:
        """Cancel the in-flight rotation before promotion and revoke its new key.

        Raises UsageError when nothing is in flight or the new key is already current.
        """
        return self.drive(intervene=lambda r, v, now: self._plan_abort(r, v, now, reason))

    def rollback(self, reason: str) -> Result:
        """Re-promote the version the latest rotation replaced.

        Raises UsageError when it is destroyed or compromised, or when the
        latest rotation has not promoted yet (abort it instead).
        """
        return self.drive(intervene=lambda r, v, now: self._plan_rollback(r, v, now, reason))

    def emergency(self, reason: str, propagation: timedelta | None = None) -> Result:
        """Replace the current key now and retire it at once: it is compromised.

        An in-flight rotation is superseded: its unpromoted new key is revoked;
        a previous key still in its overlap is retired along with the current one.
        """
        return self.drive(
            intervene=lambda r, v, now: self._plan_emergency(r, v, now, reason, propagation)
        )

    # -- driving -----------------------------------------------------------

    def drive(
        self,
        *,
        start: StartRequest | None = None,
        start_if_due: bool = False,
        intervene: Callable[[Rotation | None, list[Version], datetime], Rotation] | None = None,
    ) -> Result:
        """Execute actions until the machine says wait, idle or attention.

        ``intervene`` builds a replacement rotation record (abort, rollback,
        emergency) from the current state before the first step.
        """
        t = self.target
        result = Result(t.name, Outcome.IDLE)
        if self.locked_by is not None:
            result.outcome = Outcome.LOCKED
            result.message = f"locked by {self.locked_by.holder} since {self.locked_by.since}"
            return result
        if self.lock_warning:
            result.warnings.append(self.lock_warning)
            self.lock_warning = ""
        step = "read"
        try:
            usage: dict[str, KeyUsage] | None = None
            for _ in range(_MAX_STEPS):
                step = "read"
                versions, rotation, revision = self.runner.retrying(
                    lambda: read_state(t.store, t.path)
                )
                now = self.runner.clock.now()
                if intervene is not None:
                    step = "plan"
                    replacement = intervene(rotation, versions, now)
                    intervene = None
                    self._save(replacement, revision)
                    self.runner.boundary("after-start")
                    result.steps.append(replacement.history[-1].detail)
                    result.rotation_id = replacement.id
                    continue
                action = self._decide(rotation, versions, now, usage, start_if_due)
                in_flight = rotation is not None and not rotation.phase.terminal
                if start is not None and not in_flight:
                    action = Action(
                        ActionKind.START, start.reason or f"{start.kind.value} rotation"
                    )
                if rotation is not None and in_flight:
                    result.phase, result.rotation_id = rotation.phase, rotation.id
                step = action.kind.value
                if action.kind in (ActionKind.WAIT, ActionKind.IDLE, ActionKind.ATTENTION):
                    if action.kind is ActionKind.IDLE:
                        self._watch_retired(result, rotation, versions, now)
                    elif rotation is not None and usage is not None:
                        self._name_laggards(result, rotation, revision, versions, usage, now)
                    return self._settle(result, action, rotation, usage, versions)
                if action.kind is ActionKind.START:
                    from ..drift import detect

                    problems = detect(t, versions)
                    if problems:
                        why = "; ".join(problems)
                        return self._settle(
                            result,
                            Action(
                                ActionKind.ATTENTION,
                                f"drift: {why}; refusing to rotate until it is resolved with "
                                f"`rotatectl check {t.name} --adopt` or `--restore`",
                            ),
                            rotation,
                            usage,
                            versions,
                        )
                    request = start or StartRequest(RotationKind.SCHEDULED, reason=action.reason)
                    self._start(result, request, versions, revision, now)
                    start = None
                elif action.kind is ActionKind.CHECK_USAGE:
                    assert rotation is not None
                    usage = self._check_usage(result, rotation, versions, now)
                elif action.kind is ActionKind.DESTROY:
                    assert action.version_id is not None
                    self._destroy(result, versions, action.version_id, now)
                else:
                    assert rotation is not None
                    self._step(result, action, rotation, revision, versions, now)
                    usage = None
                result.phase = None
            raise RotatectlError(f"no progress after {_MAX_STEPS} steps")
        except LockedError as exc:
            result.outcome = Outcome.LOCKED
            result.message = f"locked by {exc.holder} since {exc.since}"
        except RotatectlError as exc:
            if isinstance(exc, UsageError):
                raise
            result.outcome = Outcome.FAILED
            result.message = f"{step}: {exc}"
            self._record_error(result.message)
            self._notify(result, "failed", severity="critical", message=result.message)
            self._hook(result, "on_failure", {"error": result.message})
        return result

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
            old_v = find_version(versions, rotation.old_version_id)
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

    def _settle(
        self,
        result: Result,
        action: Action,
        rotation: Rotation | None,
        usage: dict[str, KeyUsage] | None,
        versions: Sequence[Version],
    ) -> Result:
        if usage is not None and rotation is not None:
            old = find_version(versions, rotation.old_version_id)
            result.usage = usage.get(old.key_id) if old else None
        result.until = action.until
        result.message = action.reason
        result.attention = result.attention or action.attention
        if action.kind is ActionKind.ATTENTION:
            result.outcome = Outcome.ATTENTION
            self._notify(result, "attention", severity="warning", message=action.reason)
        elif action.kind is ActionKind.WAIT:
            result.outcome = Outcome.WAITING
            if action.attention:
                self._notify(result, "still-used", severity="warning", message=action.reason)
        else:
            result.outcome = Outcome.DONE if result.finished else Outcome.IDLE
            if result.finished and rotation is not None:
                result.message = f"{rotation.kind.value} rotation {rotation.phase.value}"
            if rotation is not None:
                result.rotation_id = rotation.id
                result.phase = rotation.phase
        return result

    # -- steps -------------------------------------------------------------

    def _save(self, rotation: Rotation, revision: int) -> int:
        t = self.target
        return self.runner.retrying(lambda: t.store.save_rotation(t.path, rotation, revision))

    def _start(
        self,
        result: Result,
        request: StartRequest,
        versions: Sequence[Version],
        revision: int,
        now: datetime,
    ) -> None:
        rotation = self._new_rotation(request.kind, versions, now, request.reason).advance(
            Phase.ISSUE, now, detail=request.reason or request.kind.value
        )
        rotation = replace(rotation, propagation=request.propagation, overlap=request.overlap)
        self._save(rotation, revision)
        self.runner.boundary("after-start")
        result.steps.append(
            f"started {request.kind.value} rotation {rotation.id} (v{rotation.new_version_number})"
        )
        result.rotation_id = rotation.id
        self._notify(result, "started", rotation=rotation, message=request.reason)

    def _new_rotation(
        self, kind: RotationKind, versions: Sequence[Version], now: datetime, reason: str
    ) -> Rotation:
        current = current_version(versions)
        return Rotation(
            id=new_rotation_id(),
            credential=self.target.name,
            kind=kind,
            phase=Phase.ISSUE,
            started=now,
            # Chosen before anything is minted: it is the idempotency token of publish.
            new_version_id=str(uuid.uuid4()),
            new_version_number=max((v.number for v in versions), default=0) + 1,
            old_version_id=current.version_id if current else None,
            reason=reason,
        )

    def _step(
        self,
        result: Result,
        action: Action,
        rotation: Rotation,
        revision: int,
        versions: Sequence[Version],
        now: datetime,
    ) -> None:
        t, r = self.target, self.runner
        new = find_version(versions, rotation.new_version_id)
        kind = action.kind
        if kind is ActionKind.PUBLISH:
            if rotation.kind is RotationKind.ROLLBACK:
                new = self._reinstate(result, rotation, versions, now)
            elif new is None:
                known: list[Sequence[Version]] = [versions]  # what this step just read
                new = r.retrying(
                    lambda: self._publish(result, rotation, now, known.pop() if known else None)
                )
            replicate = getattr(t.store, "replicate", None)
            if replicate is not None:  # several destinations: pending in all of them first
                r.retrying(lambda: replicate(t.path, rotation.new_version_id))
            # Propagation counts from now, when every destination has the key.
            published = r.clock.now()
            rotation = rotation.advance(Phase.PROPAGATE, published, published=published)
            self._save(rotation, revision)
            r.boundary("after-publish-record")
            if rotation.kind is not RotationKind.ROLLBACK:
                result.steps.append(f"published v{new.number} ({new.key_id}) as pending")
            self._notify(result, "published", rotation=rotation, version=new)
        elif kind is ActionKind.TEST:
            self._test(result, rotation, revision, now)
        elif kind is ActionKind.PROMOTE:
            assert new is not None
            if new.state is not VersionState.CURRENT:
                if not self._pre_promote_hook(result, rotation, revision, new):
                    return
                r.retrying(
                    lambda: t.store.promote(
                        t.path, rotation.new_version_id, rotation.old_version_id, now
                    )
                )
            r.boundary("after-promote")
            rotation = rotation.advance(Phase.OVERLAP, now, promoted=new.promoted or now)
            self._save(rotation, revision)
            r.boundary("after-promote-record")
            result.steps.append(f"promoted v{new.number} ({new.key_id}) to current")
            self._notify(
                result,
                "promoted",
                rotation=rotation,
                version=new,
                severity="critical" if rotation.kind is RotationKind.EMERGENCY else "info",
            )
        elif kind is ActionKind.RETIRE:
            self._retire_step(result, action, rotation, revision, versions, now)
        elif kind is ActionKind.COMPLETE:
            rotation = rotation.advance(
                rotation.final_phase, now, finished=now, detail=action.reason
            )
            self._save(rotation, revision)
            result.steps.append(f"completed: {action.reason}")
            result.finished = True
            self._notify(result, "completed", rotation=rotation)
        elif kind is ActionKind.ABORT:
            self._abort_step(result, rotation, revision, versions, now)
        elif kind is ActionKind.ROLLBACK:
            replacement = self._rollback_rotation(rotation, versions, now, action.reason, auto=True)
            self._save(replacement, revision)
            result.steps.append(replacement.history[-1].detail)
            result.warnings.append(f"rolled back automatically: {action.reason}")
            self._notify(
                result,
                "rolled-back",
                rotation=replacement,
                severity="critical",
                message=action.reason,
            )
        else:  # pragma: no cover - the machine returns nothing else here
            raise AssertionError(kind)

    def _retire_step(
        self,
        result: Result,
        action: Action,
        rotation: Rotation,
        revision: int,
        versions: Sequence[Version],
        now: datetime,
    ) -> None:
        r = self.runner
        if rotation.phase is not Phase.RETIRE:
            rotation = rotation.advance(Phase.RETIRE, now, detail=action.reason)
            revision = self._save(rotation, revision)
            r.boundary("after-retire-intent")
        for version_id in (rotation.old_version_id, *rotation.also_retire):
            old = find_version(versions, version_id)
            if old is not None and old.state in (VersionState.PREVIOUS, VersionState.PENDING):
                self._retire(old, now)
                result.steps.append(f"retired v{old.number} ({old.key_id}): {action.reason}")
                self._notify(
                    result, "retired", rotation=rotation, version=old, message=action.reason
                )
        rotation = rotation.advance(rotation.final_phase, now, retired=now, finished=now)
        self._save(rotation, revision)
        r.boundary("after-retire-record")
        result.steps.append(rotation.final_phase.value)
        result.finished = True
        self._notify(result, "completed", rotation=rotation)
        self._hook(result, "on_retire", {})

    def _publish(
        self,
        result: Result,
        rotation: Rotation,
        now: datetime,
        versions: Sequence[Version] | None = None,
    ) -> Version:
        """Mint the new key and publish it as pending. ``versions``: what the step has
        just read; None (a retry) re-reads, as the write may have landed although
        its reply was lost."""
        t, r = self.target, self.runner
        if versions is None:
            versions = t.store.versions(t.path)
        existing = find_version(versions, rotation.new_version_id)
        if existing is not None:
            return existing
        self._sweep_orphans(result, rotation, versions)
        issued = t.issuer.create(t.name, rotation.new_version_id, t.scopes)
        redact.register(issued.value)
        r.boundary("after-issue")
        version = Version(
            version_id=rotation.new_version_id,
            number=rotation.new_version_number,
            key_id=issued.key_id,
            fingerprint=issued.fingerprint,
            state=VersionState.PENDING,
            created=now,
            rotation_id=rotation.id,
            issuer_ref=issued.issuer_ref,
            expires=issued.expires,
            scopes=t.scopes,
        )
        t.store.publish(t.path, version, issued.value)
        del issued  # the value is in the store now; drop our reference to it
        r.boundary("after-publish")
        return version

    def _reinstate(
        self, result: Result, rotation: Rotation, versions: Sequence[Version], now: datetime
    ) -> Version:
        """Rollback's publish: make the earlier key work and be accepted again."""
        t, r = self.target, self.runner
        target = find_version(versions, rotation.new_version_id)
        if target is None or target.state is VersionState.DESTROYED:
            raise ConflictError(f"version {rotation.new_version_id} is gone; cannot roll back")
        if target.issuer_ref:
            # Also for a previous key: a crash between disabling it and recording the
            # retirement leaves it previous in the store but disabled at the issuer.
            r.retrying(lambda: t.issuer.enable(t.name, target.issuer_ref or ""))
        if target.state is VersionState.RETIRED:
            r.retrying(
                lambda: t.store.set_state(
                    t.path, target.version_id, VersionState.PENDING, VersionState.RETIRED, now
                )
            )
            result.steps.append(f"re-enabled v{target.number} ({target.key_id})")
        return target

    def _sweep_orphans(
        self, result: Result, rotation: Rotation, versions: Sequence[Version]
    ) -> None:
        """Revoke keys minted by rotatectl that no version records (invariant 4).

        They were minted for this rotation, or for one it superseded (an
        emergency or abort after a crash), and their publish never happened.
        Untagged keys are not rotatectl's to judge and are left alone.
        """
        t = self.target
        keys = t.issuer.list_keys(t.name)
        if not keys:
            return
        known = {v.issuer_ref for v in versions if v.issuer_ref}
        for key in keys:
            if key.tag is not None and key.issuer_ref not in known:
                t.issuer.delete(t.name, key.issuer_ref)
                result.steps.append(
                    f"revoked orphan key {key.issuer_ref} left by an interrupted run"
                )

    def _retire(self, old: Version, now: datetime) -> None:
        t, r = self.target, self.runner
        if old.issuer_ref:
            r.retrying(lambda: t.issuer.disable(t.name, old.issuer_ref or ""))
            r.boundary("after-disable")
        r.retrying(
            lambda: t.store.set_state(t.path, old.version_id, VersionState.RETIRED, old.state, now)
        )
        r.boundary("after-retire")

    def _destroy(
        self, result: Result, versions: Sequence[Version], version_id: str, now: datetime
    ) -> None:
        t, r = self.target, self.runner
        v = find_version(versions, version_id)
        if v is None or v.state is not VersionState.RETIRED:
            raise ConflictError(f"version {version_id} is no longer retired")
        if v.issuer_ref:
            r.retrying(lambda: t.issuer.delete(t.name, v.issuer_ref or ""))
            r.boundary("after-destroy-issuer")
        r.retrying(
            lambda: t.store.set_state(
                t.path, version_id, VersionState.DESTROYED, VersionState.RETIRED, now
            )
        )
        r.boundary("after-destroy")
        result.steps.append(f"destroyed v{v.number} ({v.key_id})")
        self._notify(result, "destroyed", version=v)

    def _check_usage(
        self, result: Result, rotation: Rotation, versions: Sequence[Version], now: datetime
    ) -> dict[str, KeyUsage]:
        t = self.target
        old = find_version(versions, rotation.old_version_id)
        new = find_version(versions, rotation.new_version_id)
        # The old key: any sighting since before the rotation started counts.
        queries = [(old, rotation.started - t.policy.usage_quiet)]
        if watches_failed_auth(rotation, t.policy) and rotation.promoted is not None:
            # The new key: only rejections since its promotion count.
            queries.append((new, rotation.promoted))
        usage: dict[str, KeyUsage] = {}
        for version, since in queries:
            if version is None:
                continue
            key_id = version.key_id
            try:
                answer = self.runner.retrying(
                    lambda k=key_id, s=since: t.probe.usage(t.name, [k], s, now)  # type: ignore[misc]
                )
                usage[key_id] = answer.get(key_id, KeyUsage(UsageStatus.UNKNOWN))
            except ProbeError as exc:
                # A probe that cannot answer keeps the gate closed (unknown is not quiet).
                result.warnings.append(f"usage probe failed: {exc}")
                usage[key_id] = KeyUsage(UsageStatus.UNKNOWN, detail=str(exc))
        return usage

    def _name_laggards(
        self,
        result: Result,
        rotation: Rotation,
        revision: int,
        versions: Sequence[Version],
        usage: dict[str, KeyUsage],
        now: datetime,
    ) -> None:
        """Tell people who still uses the old key: once, then a reminder per interval.

        The last notice is kept in the rotation record, so cron running every
        few minutes does not repeat it on every run.
        """
        old = find_version(versions, rotation.old_version_id)
        seen = usage.get(old.key_id) if old else None
        if old is None or seen is None or seen.status is not UsageStatus.SEEN:
            return
        notices = [e for e in rotation.history if e.what in ("laggards", "reminder")]
        if notices and now - notices[-1].at < REMINDER_INTERVAL:
            return
        kind = "reminder" if notices else "laggards"
        who = ", ".join(seen.clients) or "unknown clients"
        message = f"v{old.number} ({old.key_id}) is still used by {who} ({seen.count} requests)"
        event = RotationEvent(at=now, what=kind, detail=message)
        self._save(replace(rotation, history=(*rotation.history, event)), revision)
        self._notify(
            result, kind, severity="warning", rotation=rotation, version=old, message=message
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
        compromised = (
            {rotation.old_version_id, *rotation.also_retire}
            if rotation is not None and rotation.kind is RotationKind.EMERGENCY
            else set()
        )
        for v in retired:
            usage = seen.get(v.key_id)
            if usage is None or usage.last_seen is None or v.retired is None:
                continue
            if usage.last_seen <= v.retired:
                continue
            leaked = v.version_id in compromised or v.compromised
            who = f" by {', '.join(usage.clients)}" if usage.clients else ""
            message = (
                f"{'compromised' if leaked else 'retired'} key v{v.number} ({v.key_id}) was "
                f"presented {usage.count} times since its retirement{who}"
            )
            result.warnings.append(message)
            result.attention = True
            self._notify(
                result,
                "retired-key-presented",
                severity="critical" if leaked else "warning",
                version=v,
                message=message,
            )

    # -- pre-promotion test, hooks, abort, rollback, emergency --------------

    def _test(self, result: Result, rotation: Rotation, revision: int, now: datetime) -> None:
        t, clock = self.target, self.runner.clock
        assert t.pretest is not None
        value = t.store.read_value(t.path, rotation.new_version_id)
        redact.register(value)
        from ..pretest import run_test

        outcome = run_test(t.pretest, value, sleep=clock.sleep, monotonic=_seconds(clock))
        del value
        if outcome.ok:
            rotation = replace(rotation, tested=clock.now()).advance(
                Phase.PROPAGATE, clock.now(), detail=f"pre-promotion test passed: {outcome.detail}"
            )
            self._save(rotation, revision)
            result.steps.append(f"pre-promotion test passed ({outcome.detail})")
            return
        reason = f"pre-promotion test failed: {outcome.detail}"
        self._save(
            rotation.advance(Phase.ABORT, clock.now(), detail=reason, reason=reason), revision
        )
        result.warnings.append(reason)

    def _pre_promote_hook(
        self, result: Result, rotation: Rotation, revision: int, new: Version
    ) -> bool:
        """Run on_promote with the new key on stdin. False when it failed and aborted."""
        t = self.target
        if t.hooks is None or not t.hooks.on_promote:
            return True
        value = t.store.read_value(t.path, new.version_id)
        redact.register(value)
        hook = self._hook(result, "on_promote", {"version": str(new.number)}, stdin=value)
        del value
        if hook is None or hook.ok or not t.hooks.abort_on_failure:
            return True
        reason = f"{hook.summary()}; aborting before promotion"
        now = self.runner.clock.now()
        self._save(rotation.advance(Phase.ABORT, now, detail=reason, reason=reason), revision)
        result.warnings.append(reason)
        return False

    def _hook(
        self, result: Result, event: str, extra: dict[str, str], stdin: str | None = None
    ) -> HookResult | None:
        t = self.target
        if t.hooks is None or not t.hooks.command(event):
            return None
        metadata = {"credential": t.name, "store": t.store_name, "path": t.path, **extra}
        if result.rotation_id:
            metadata["rotation_id"] = result.rotation_id
        hook = run_hook(
            event, t.hooks.command(event), metadata, timeout=t.hooks.timeout, stdin_value=stdin
        )
        (result.steps if hook.ok else result.warnings).append(hook.summary())
        return hook

    def _abort_step(
        self,
        result: Result,
        rotation: Rotation,
        revision: int,
        versions: Sequence[Version],
        now: datetime,
    ) -> None:
        new = find_version(versions, rotation.new_version_id)
        if new is None:
            self._sweep_orphans(result, rotation, versions)
        elif new.state is VersionState.PENDING:
            self._retire(new, now)
            result.steps.append(f"revoked the new key v{new.number} ({new.key_id})")
        elif new.state is VersionState.CURRENT:
            raise ConflictError("the new key is already current; use rollback")
        rotation = rotation.advance(Phase.ABORTED, now, finished=now, detail=rotation.reason)
        self._save(rotation, revision)
        result.steps.append(f"aborted: {rotation.reason}")
        result.finished = True
        self._notify(
            result, "aborted", rotation=rotation, severity="warning", message=rotation.reason
        )

    def _plan_abort(
        self, rotation: Rotation | None, versions: list[Version], now: datetime, reason: str
    ) -> Rotation:
        if rotation is None or rotation.phase.terminal:
            raise UsageError(f"{self.target.name}: no rotation in flight to abort")
        new = find_version(versions, rotation.new_version_id)
        promoted = new is not None and new.state is VersionState.CURRENT
        # The store, not the record, says whether clients were told: a crash can
        # leave the record in propagate after the promotion happened.
        if promoted or rotation.phase not in (Phase.ISSUE, Phase.PROPAGATE, Phase.ABORT):
            raise UsageError(
                f"{self.target.name}: rotation {rotation.id} has promoted its new key; "
                "use `rotatectl rollback` instead"
            )
        why = reason or "aborted by the operator"
        return rotation.advance(Phase.ABORT, now, detail=f"aborting: {why}", reason=why)

    def _plan_rollback(
        self, rotation: Rotation | None, versions: list[Version], now: datetime, reason: str
    ) -> Rotation:
        name = self.target.name
        if rotation is None:
            raise UsageError(f"{name}: nothing to roll back (never rotated)")
        new = find_version(versions, rotation.new_version_id)
        promoted = new is not None and new.state is VersionState.CURRENT
        if not promoted and rotation.phase in (Phase.ISSUE, Phase.PROPAGATE, Phase.ABORT):
            raise UsageError(f"{name}: rotation {rotation.id} has not promoted yet; use abort")
        return self._rollback_rotation(rotation, versions, now, reason, auto=False)

    def _rollback_rotation(
        self,
        rotation: Rotation,
        versions: Sequence[Version],
        now: datetime,
        reason: str,
        *,
        auto: bool,
    ) -> Rotation:
        name = self.target.name
        if rotation.kind is RotationKind.EMERGENCY:
            raise UsageError(f"{name}: the previous key was compromised (emergency); refusing")
        if rotation.kind is RotationKind.ROLLBACK:
            raise UsageError(f"{name}: the latest rotation is already a rollback")
        target = find_version(versions, rotation.old_version_id)
        current = current_version(versions)
        if target is None:
            raise UsageError(f"{name}: there is no earlier key to roll back to")
        if target.state is VersionState.DESTROYED:
            raise UsageError(f"{name}: v{target.number} is destroyed; cannot roll back")
        if target.compromised:
            raise UsageError(f"{name}: v{target.number} is compromised; refusing")
        if current is None or current.version_id != rotation.new_version_id:
            raise UsageError(f"{name}: the current key is not the one rotation {rotation.id} made")
        why = reason or ("automatic rollback" if auto else "rolled back by the operator")
        back = Rotation(
            id=new_rotation_id(),
            credential=name,
            kind=RotationKind.ROLLBACK,
            phase=Phase.ISSUE,
            started=now,
            new_version_id=target.version_id,
            new_version_number=target.number,
            old_version_id=current.version_id,
            # A previous key is still accepted everywhere; a retired one must propagate again.
            propagation=timedelta(0) if target.state is VersionState.PREVIOUS else None,
            overlap=timedelta(0) if auto else None,
            reason=why,
            force_retire=auto,
            supersedes=rotation.id,
        )
        detail = f"rolling back to v{target.number} ({target.key_id}): {why}"
        return back.advance(Phase.ISSUE, now, detail=detail)

    def _plan_emergency(
        self,
        rotation: Rotation | None,
        versions: list[Version],
        now: datetime,
        reason: str,
        propagation: timedelta | None,
    ) -> Rotation:
        name = self.target.name
        current = current_version(versions)
        if current is None:
            raise UsageError(f"{name}: no current key to replace")
        also: list[str] = []
        supersedes = None
        if rotation is not None and not rotation.phase.terminal:
            supersedes = rotation.id
            for v in versions:
                # The superseded rotation's pending key and any previous key still in overlap.
                if v.state in (VersionState.PENDING, VersionState.PREVIOUS):
                    also.append(v.version_id)
        emergency = replace(
            self._new_rotation(RotationKind.EMERGENCY, versions, now, reason),
            propagation=propagation if propagation is not None else timedelta(0),
            overlap=timedelta(0),
            force_retire=True,
            supersedes=supersedes,
            also_retire=tuple(also),
        )
        detail = (
            f"emergency rotation {emergency.id}: replacing v{current.number} ({current.key_id})"
        )
        if supersedes:
            detail += f"; supersedes rotation {supersedes}"
        return emergency.advance(Phase.ISSUE, now, detail=detail)

    # -- records and notifications ----------------------------------------

    def _record_error(self, message: str) -> None:
        """Best effort: note the failure in the in-flight rotation record."""
        t = self.target
        with contextlib.suppress(RotatectlError):
            rotation, revision = t.store.load_rotation(t.path)
            if rotation is not None and not rotation.phase.terminal:
                t.store.save_rotation(t.path, replace(rotation, error=message), revision)

    def _notify(
        self,
        result: Result,
        kind: str,
        *,
        severity: str = "info",
        rotation: Rotation | None = None,
        version: Version | None = None,
        message: str = "",
    ) -> None:
        """Audit the event, then tell the notifiers. Neither can fail the rotation."""
        t = self.target
        event = Event(
            kind=kind,
            credential=t.name,
            at=self.runner.clock.now(),
            severity=severity,
            rotation_id=rotation.id if rotation else result.rotation_id,
            version_id=version.version_id if version else None,
            key_id=version.key_id if version else None,
            message=message,
        )
        self.runner.record(result, t, event, version)


def _seconds(clock: Clock) -> Callable[[], float]:
    return lambda: clock.now().timestamp()


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
