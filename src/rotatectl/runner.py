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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from .errors import (
    ConflictError,
    ExitCode,
    LockedError,
    NotifierError,
    ProbeError,
    RotatectlError,
)
from .machine import Action, ActionKind, current_version, find_version, next_action
from .model import (
    Event,
    KeyUsage,
    Lease,
    Phase,
    Policy,
    Rotation,
    RotationKind,
    UsageStatus,
    Version,
    VersionState,
    new_rotation_id,
)
from .ports import Clock, KeyIssuer, Notifier, SecretStore, UsageProbe

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


@dataclass(frozen=True)
class Target:
    """Everything the runner needs for one credential, adapters already built."""

    name: str
    path: str
    store: SecretStore
    issuer: KeyIssuer
    probe: UsageProbe
    policy: Policy
    store_name: str = "local"
    scopes: tuple[str, ...] = ()
    notifiers: Sequence[tuple[str, Notifier]] = ()


class Outcome(StrEnum):
    DONE = "done"  # the rotation finished in this call
    WAITING = "waiting"  # in flight; nothing to do before ``until``
    IDLE = "idle"  # nothing in flight, nothing due
    PLANNED = "planned"  # dry run: what would happen
    ATTENTION = "attention"  # a human must look
    FAILED = "failed"
    LOCKED = "locked"


@dataclass
class Result:
    """What one call did for one credential; the CLI renders it."""

    credential: str
    outcome: Outcome
    message: str = ""
    phase: Phase | None = None
    rotation_id: str | None = None
    until: datetime | None = None
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    usage: KeyUsage | None = None
    attention: bool = False
    finished: bool = False  # a rotation reached COMPLETED during this call

    @property
    def exit_code(self) -> ExitCode:
        if self.outcome is Outcome.FAILED:
            return ExitCode.FAILED
        if self.outcome is Outcome.LOCKED:
            return ExitCode.LOCKED
        if self.outcome is Outcome.ATTENTION or self.attention:
            return ExitCode.ATTENTION
        return ExitCode.OK


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
    ) -> None:
        self.clock = clock
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

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, RotatectlError) and exc.retryable

        retryer = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.retry_attempts) | stop_after_delay(self.retry_max_delay),
            wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.5),
            sleep=self.clock.sleep,
            reraise=True,
        )
        return retryer(fn)


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

    # -- driving -----------------------------------------------------------

    def drive(self, *, start: StartRequest | None = None, start_if_due: bool = False) -> Result:
        """Execute actions until the machine says wait, idle or attention."""
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
            usage: KeyUsage | None = None
            for _ in range(_MAX_STEPS):
                step = "read"
                rotation, revision = self.runner.retrying(lambda: t.store.load_rotation(t.path))
                versions = self.runner.retrying(lambda: t.store.versions(t.path))
                now = self.runner.clock.now()
                action = next_action(
                    rotation, versions, t.policy, now, usage, start_if_due=start_if_due
                )
                in_flight = rotation is not None and not rotation.phase.terminal
                if start is not None and not in_flight:
                    action = Action(
                        ActionKind.START, start.reason or f"{start.kind.value} rotation"
                    )
                if rotation is not None and in_flight:
                    result.phase, result.rotation_id = rotation.phase, rotation.id
                step = action.kind.value
                if action.kind in (ActionKind.WAIT, ActionKind.IDLE, ActionKind.ATTENTION):
                    return self._settle(result, action, rotation, usage)
                if action.kind is ActionKind.START:
                    assert start is not None or start_if_due
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
                result.phase = None
            raise RotatectlError(f"no progress after {_MAX_STEPS} steps")
        except LockedError as exc:
            result.outcome = Outcome.LOCKED
            result.message = f"locked by {exc.holder} since {exc.since}"
        except RotatectlError as exc:
            result.outcome = Outcome.FAILED
            result.message = f"{step}: {exc}"
            self._record_error(result.message)
            self._notify(result, "failed", severity="critical", message=result.message)
        return result

    def _settle(
        self, result: Result, action: Action, rotation: Rotation | None, usage: KeyUsage | None
    ) -> Result:
        result.usage = usage
        result.until = action.until
        result.message = action.reason
        result.attention = action.attention
        if action.kind is ActionKind.ATTENTION:
            result.outcome = Outcome.ATTENTION
            self._notify(result, "attention", severity="warning", message=action.reason)
        elif action.kind is ActionKind.WAIT:
            result.outcome = Outcome.WAITING
            if action.attention:
                self._notify(result, "still-used", severity="warning", message=action.reason)
        else:
            result.outcome = Outcome.DONE if result.finished else Outcome.IDLE
            if result.finished:
                result.message = "rotation completed"
            if rotation is not None:
                result.rotation_id = rotation.id
                result.phase = rotation.phase
        return result

    # -- steps -------------------------------------------------------------

    def _save(self, rotation: Rotation, revision: int) -> int:
        t = self.target
        return t.store.save_rotation(t.path, rotation, revision)

    def _start(
        self,
        result: Result,
        request: StartRequest,
        versions: Sequence[Version],
        revision: int,
        now: datetime,
    ) -> None:
        t = self.target
        current = current_version(versions)
        number = max((v.number for v in versions), default=0) + 1
        rotation = Rotation(
            id=new_rotation_id(),
            credential=t.name,
            kind=request.kind,
            phase=Phase.ISSUE,
            started=now,
            # Chosen before anything is minted: it is the idempotency token of publish.
            new_version_id=str(uuid.uuid4()),
            new_version_number=number,
            old_version_id=current.version_id if current else None,
            propagation=request.propagation,
            overlap=request.overlap,
            reason=request.reason,
        ).advance(Phase.ISSUE, now, detail=request.reason or request.kind.value)
        self._save(rotation, revision)
        self.runner.boundary("after-start")
        result.steps.append(f"started {request.kind.value} rotation {rotation.id} (v{number})")
        result.rotation_id = rotation.id
        self._notify(result, "started", rotation=rotation, message=request.reason)

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
        if action.kind is ActionKind.PUBLISH:
            if new is None:
                new = r.retrying(lambda: self._publish(result, rotation, versions, now))
            rotation = rotation.advance(Phase.PROPAGATE, now, published=new.created)
            self._save(rotation, revision)
            r.boundary("after-publish-record")
            result.steps.append(f"published v{new.number} ({new.key_id}) as pending")
            self._notify(result, "published", rotation=rotation, version=new)
        elif action.kind is ActionKind.PROMOTE:
            assert new is not None
            if new.state is not VersionState.CURRENT:
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
            self._notify(result, "promoted", rotation=rotation, version=new)
        elif action.kind is ActionKind.RETIRE:
            if rotation.phase is not Phase.RETIRE:
                rotation = rotation.advance(Phase.RETIRE, now, detail=action.reason)
                revision = self._save(rotation, revision)
                r.boundary("after-retire-intent")
            old = find_version(versions, rotation.old_version_id)
            if old is not None and old.state not in (VersionState.RETIRED, VersionState.DESTROYED):
                self._retire(old, now)
                result.steps.append(f"retired v{old.number} ({old.key_id}): {action.reason}")
                self._notify(
                    result, "retired", rotation=rotation, version=old, message=action.reason
                )
            rotation = rotation.advance(Phase.COMPLETED, now, retired=now, finished=now)
            self._save(rotation, revision)
            r.boundary("after-retire-record")
            result.steps.append("completed")
            result.finished = True
            self._notify(result, "completed", rotation=rotation)
        elif action.kind is ActionKind.COMPLETE:
            rotation = rotation.advance(Phase.COMPLETED, now, finished=now, detail=action.reason)
            self._save(rotation, revision)
            result.steps.append(f"completed: {action.reason}")
            result.finished = True
            self._notify(result, "completed", rotation=rotation)
        else:  # pragma: no cover - the machine returns nothing else here
            raise AssertionError(action.kind)

    def _publish(
        self, result: Result, rotation: Rotation, versions: Sequence[Version], now: datetime
    ) -> Version:
        t, r = self.target, self.runner
        # Re-read: a retried publish may find the write landed although its reply was lost.
        versions = t.store.versions(t.path)
        existing = find_version(versions, rotation.new_version_id)
        if existing is not None:
            return existing
        self._sweep_orphans(result, rotation, versions)
        issued = t.issuer.create(t.name, rotation.new_version_id, t.scopes)
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

    def _sweep_orphans(
        self, result: Result, rotation: Rotation, versions: Sequence[Version]
    ) -> None:
        """Revoke keys minted for this rotation whose publish never happened (invariant 4)."""
        t = self.target
        keys = t.issuer.list_keys(t.name)
        if not keys:
            return
        known = {v.issuer_ref for v in versions if v.issuer_ref}
        for key in keys:
            if key.tag == rotation.new_version_id and key.issuer_ref not in known:
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
    ) -> KeyUsage:
        t = self.target
        old = find_version(versions, rotation.old_version_id)
        assert old is not None
        since = rotation.started - t.policy.usage_quiet
        try:
            answer = self.runner.retrying(lambda: t.probe.usage(t.name, [old.key_id], since, now))
            usage = answer.get(
                old.key_id, KeyUsage(UsageStatus.UNKNOWN, detail="probe gave no answer")
            )
        except ProbeError as exc:
            # A probe that cannot answer keeps the gate closed (unknown is not quiet).
            result.warnings.append(f"usage probe failed: {exc}")
            usage = KeyUsage(UsageStatus.UNKNOWN, detail=str(exc))
        result.usage = usage
        return usage

    # -- records and notifications ----------------------------------------

    def _record_error(self, message: str) -> None:
        """Best effort: note the failure in the in-flight rotation record."""
        t = self.target
        with contextlib.suppress(RotatectlError):
            rotation, revision = t.store.load_rotation(t.path)
            if rotation is not None and not rotation.phase.terminal:
                t.store.save_rotation(
                    t.path,
                    Rotation.from_dict({**rotation.to_dict(), "error": message}),
                    revision,
                )

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
        t = self.target
        if not t.notifiers:
            return
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
        for name, notifier in t.notifiers:
            try:
                notifier.notify(event)
            except NotifierError as exc:
                result.warnings.append(f"notifier {name} failed: {exc}")


def _describe_plan(
    action: Action, target: Target, versions: Sequence[Version], start: StartRequest | None
) -> str:
    from .durations import format_duration

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
