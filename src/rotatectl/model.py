"""Domain types: versions, rotations, policies. Pure data, no I/O.

Every type serialises to and from a JSON-safe dict (``to_dict``/``from_dict``)
so that stores can persist them. No type here ever holds a key value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from .errors import CorruptRecordError, ExitCode
from .schedule import Window


class VersionState(StrEnum):
    """Lifecycle of one key value. Moves forward only, except by rollback."""

    PENDING = "pending"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"
    DESTROYED = "destroyed"

    @property
    def accepted(self) -> bool:
        """True when verifiers must accept a key in this state."""
        return self in (VersionState.PENDING, VersionState.CURRENT, VersionState.PREVIOUS)


class Phase(StrEnum):
    """Where a rotation stands. The terminal phases end it."""

    ISSUE = "issue"  # intent recorded; mint the key and publish it as pending
    PROPAGATE = "propagate"  # pending everywhere; wait out the propagation delay, then promote
    OVERLAP = "overlap"  # promoted; old key stays accepted until the gate opens
    RETIRE = "retire"  # gate passed; disable the old key at the issuer and store
    ABORT = "abort"  # cancelled before promotion; revoke the new key
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled-back"
    # Never stored: how reports show a record that a later one replaced (its
    # ``supersedes``) before it finished — an emergency or a rollback took over.
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.ABORTED, Phase.ROLLED_BACK, Phase.SUPERSEDED)


class RotationKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    EMERGENCY = "emergency"
    ROLLBACK = "rollback"  # re-promotes an earlier version; "new" is that version


class OnStillUsed(StrEnum):
    """What to do when the old key is still used once max_overlap has passed."""

    WAIT = "wait"
    FAIL = "fail"
    FORCE = "force"


T = TypeVar("T")


def _decode(kind: str, fn: Callable[[dict[str, Any]], T], data: Any) -> T:
    """Run a decoder, turning any shape error into one clear CorruptRecordError."""
    try:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        return fn(data)
    except (KeyError, ValueError, TypeError, AttributeError, AssertionError) as exc:
        what = (
            f"missing field {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        )
        raise CorruptRecordError(f"a {kind} record is not what rotatectl wrote: {what}") from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Policy:
    """Durations and rules for one credential (see DESIGN.md, config)."""

    propagation: timedelta = timedelta(seconds=30)
    overlap: timedelta = timedelta(hours=24)
    max_age: timedelta = timedelta(days=90)
    usage_quiet: timedelta = timedelta(minutes=15)
    on_still_used: OnStillUsed = OnStillUsed.WAIT
    max_overlap: timedelta = timedelta(days=7)
    keep_previous: int = 1
    retain: timedelta = timedelta(days=7)
    unknown_usage_is_quiet: bool = False
    # How often a waiting usage gate looks again; bounds `rotate --wait` sleeps.
    recheck: timedelta = timedelta(minutes=1)
    # Failed-auth watch: roll back when the new key is rejected this many times
    # within rejection_window after promotion (0 = off).
    rollback_on_rejections: int = 0
    rejection_window: timedelta = timedelta(minutes=5)
    window: Window | None = None  # when run may start a due rotation (None: any time)
    # After a failed rotation `run` waits this long before starting that credential
    # again, doubling per consecutive failure up to backoff_max (manual rotate: never held).
    backoff: timedelta = timedelta(minutes=15)
    backoff_max: timedelta = timedelta(hours=24)
    # A key with an expiry (the service's, or `supply --expires`): `run` starts the
    # next rotation this long before it (certbot's renew_before_expiry).
    renew_before: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class Version:
    """One key value's metadata. The value itself lives only in the store."""

    version_id: str
    number: int
    key_id: str
    fingerprint: str
    state: VersionState
    created: datetime
    rotation_id: str | None = None
    issuer_ref: str | None = None
    promoted: datetime | None = None
    demoted: datetime | None = None
    retired: datetime | None = None
    destroyed: datetime | None = None
    expires: datetime | None = None
    scopes: tuple[str, ...] = ()
    compromised: bool = False
    # The JSON field of the stored document that holds the key ("": the value is the
    # key): the fingerprint and key id cover that field only (rotatectl.secretformat).
    field: str = ""

    def with_state(self, state: VersionState, at: datetime) -> Version:
        """Return a copy in ``state``, stamping the matching timestamp."""
        stamps: dict[str, Any] = {"state": state}
        if state is VersionState.CURRENT:
            stamps["promoted"] = at
        elif state is VersionState.PREVIOUS:
            stamps["demoted"] = at
        elif state is VersionState.RETIRED:
            stamps["retired"] = at
        elif state is VersionState.DESTROYED:
            stamps["destroyed"] = at
        return replace(self, **stamps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "number": self.number,
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "state": self.state.value,
            "created": _iso(self.created),
            "rotation_id": self.rotation_id,
            "issuer_ref": self.issuer_ref,
            "promoted": _iso(self.promoted),
            "demoted": _iso(self.demoted),
            "retired": _iso(self.retired),
            "destroyed": _iso(self.destroyed),
            "expires": _iso(self.expires),
            "scopes": list(self.scopes),
            "compromised": self.compromised,
            # Only for a document: records of bare values stay as they were.
            **({"field": self.field} if self.field else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        """Decode a stored version; CorruptRecordError if it is not what rotatectl wrote."""
        return _decode("version", cls._from_dict, data)

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Version:
        created = _parse_iso(data["created"])
        assert created is not None
        return cls(
            version_id=str(data["version_id"]),
            number=int(data["number"]),
            key_id=str(data["key_id"]),
            fingerprint=str(data["fingerprint"]),
            state=VersionState(data["state"]),
            created=created,
            rotation_id=data.get("rotation_id"),
            issuer_ref=data.get("issuer_ref"),
            promoted=_parse_iso(data.get("promoted")),
            demoted=_parse_iso(data.get("demoted")),
            retired=_parse_iso(data.get("retired")),
            destroyed=_parse_iso(data.get("destroyed")),
            expires=_parse_iso(data.get("expires")),
            scopes=tuple(data.get("scopes") or ()),
            compromised=bool(data.get("compromised", False)),
            field=str(data.get("field") or ""),
        )


@dataclass(frozen=True)
class AcceptedKey:
    """What a verifier needs: no value, only the key id and a hash of the secret."""

    credential: str
    version_id: str
    key_id: str
    fingerprint: str
    state: VersionState
    scopes: tuple[str, ...] = ()
    expires: datetime | None = None


@dataclass(frozen=True)
class RotationEvent:
    """One line of a rotation's history: what happened, when."""

    at: datetime
    what: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "what": self.what, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RotationEvent:
        at = _parse_iso(data["at"])
        assert at is not None
        return cls(at=at, what=str(data["what"]), detail=str(data.get("detail", "")))


# A rotation's history keeps its first event and the latest ones: events that
# repeat (reminders of a laggard that never stops) must not grow the record.
HISTORY_EVENTS = 24


def bounded(history: tuple[RotationEvent, ...]) -> tuple[RotationEvent, ...]:
    """``history`` cut to its first event and the latest HISTORY_EVENTS - 1."""
    if len(history) <= HISTORY_EVENTS:
        return history
    return (history[0], *history[-(HISTORY_EVENTS - 1) :])


def new_rotation_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Rotation:
    """One run of the workflow for one credential, persisted next to it.

    ``new_version_id`` is chosen before anything is minted, so publishing is
    idempotent: a resume finds the version already there and does not add one.
    """

    id: str
    credential: str
    kind: RotationKind
    phase: Phase
    started: datetime
    new_version_id: str
    new_version_number: int
    old_version_id: str | None
    propagation: timedelta | None = None  # overrides of the policy, set at start
    overlap: timedelta | None = None
    published: datetime | None = None
    promoted: datetime | None = None
    retired: datetime | None = None
    finished: datetime | None = None
    reason: str = ""
    error: str = ""
    history: tuple[RotationEvent, ...] = field(default_factory=tuple)
    tested: datetime | None = None  # when the pre-promotion test passed
    force_retire: bool = False  # retire the old key right after promotion (emergency)
    supersedes: str | None = None  # the rotation this one replaced (emergency, rollback)
    also_retire: tuple[str, ...] = ()  # other versions to retire with the old one
    # Why it failed (a hook, the pre-promotion test), once it ended aborted for it;
    # "" for a rotation that did not fail (an operator's abort is not a failure).
    failure: str = ""
    # Consecutive failed rotations of the credential, this one included once it
    # failed (while in flight: the ones before it). Drives run's backoff.
    failures: int = 0

    @property
    def failed(self) -> bool:
        """Ended aborted because something failed (not because someone asked)."""
        return self.phase is Phase.ABORTED and bool(self.failure)

    @property
    def leaked(self) -> tuple[str, ...]:
        """The versions an emergency replaced as compromised (none for other kinds)."""
        if self.kind is not RotationKind.EMERGENCY:
            return ()
        return tuple(v for v in (self.old_version_id, *self.also_retire) if v is not None)

    @property
    def final_phase(self) -> Phase:
        """Where this rotation ends when all goes well."""
        return Phase.ROLLED_BACK if self.kind is RotationKind.ROLLBACK else Phase.COMPLETED

    def advance(self, phase: Phase, at: datetime, detail: str = "", **changes: Any) -> Rotation:
        """Return a copy moved to ``phase`` with an event appended."""
        event = RotationEvent(at=at, what=phase.value, detail=detail)
        return replace(self, phase=phase, history=bounded((*self.history, event)), **changes)

    def noted(self, what: str, at: datetime, detail: str = "") -> Rotation:
        """Return a copy with an event appended that does not change the phase."""
        event = RotationEvent(at=at, what=what, detail=detail)
        return replace(self, history=bounded((*self.history, event)))

    def effective_propagation(self, policy: Policy) -> timedelta:
        if self.old_version_id is None:
            # First key of a credential: no client holds any key yet, nothing to wait for.
            return timedelta(0)
        return self.propagation if self.propagation is not None else policy.propagation

    def effective_overlap(self, policy: Policy) -> timedelta:
        return self.overlap if self.overlap is not None else policy.overlap

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "credential": self.credential,
            "kind": self.kind.value,
            "phase": self.phase.value,
            "started": _iso(self.started),
            "new_version_id": self.new_version_id,
            "new_version_number": self.new_version_number,
            "old_version_id": self.old_version_id,
            "propagation": None if self.propagation is None else self.propagation.total_seconds(),
            "overlap": None if self.overlap is None else self.overlap.total_seconds(),
            "published": _iso(self.published),
            "promoted": _iso(self.promoted),
            "retired": _iso(self.retired),
            "finished": _iso(self.finished),
            "reason": self.reason,
            "error": self.error,
            "history": [e.to_dict() for e in self.history],
            "tested": _iso(self.tested),
            "force_retire": self.force_retire,
            "supersedes": self.supersedes,
            "also_retire": list(self.also_retire),
            "failure": self.failure,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rotation:
        """Decode a stored rotation record; CorruptRecordError if it is not ours."""
        return _decode("rotation", cls._from_dict, data)

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Rotation:
        started = _parse_iso(data["started"])
        assert started is not None
        prop, over = data.get("propagation"), data.get("overlap")
        return cls(
            id=str(data["id"]),
            credential=str(data["credential"]),
            kind=RotationKind(data["kind"]),
            phase=Phase(data["phase"]),
            started=started,
            new_version_id=str(data["new_version_id"]),
            new_version_number=int(data["new_version_number"]),
            old_version_id=data.get("old_version_id"),
            propagation=None if prop is None else timedelta(seconds=float(prop)),
            overlap=None if over is None else timedelta(seconds=float(over)),
            published=_parse_iso(data.get("published")),
            promoted=_parse_iso(data.get("promoted")),
            retired=_parse_iso(data.get("retired")),
            finished=_parse_iso(data.get("finished")),
            reason=str(data.get("reason", "")),
            error=str(data.get("error", "")),
            history=tuple(RotationEvent.from_dict(e) for e in data.get("history", ())),
            tested=_parse_iso(data.get("tested")),
            force_retire=bool(data.get("force_retire", False)),
            supersedes=data.get("supersedes"),
            also_retire=tuple(data.get("also_retire") or ()),
            failure=str(data.get("failure", "")),
            failures=int(data.get("failures", 0)),
        )


@dataclass(frozen=True)
class IssuedKey:
    """What an issuer returns on create. ``value`` is secret: never log it."""

    value: str
    key_id: str
    fingerprint: str
    issuer_ref: str
    expires: datetime | None = None
    # Other values minted with the key (a database user's name), by field name: written
    # beside it in a JSON document (format = "json"); as secret as ``value``.
    extra: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # keep the value out of reprs and tracebacks
        return (
            f"IssuedKey(key_id={self.key_id!r}, issuer_ref={self.issuer_ref!r}, value=<redacted>)"
        )


@dataclass(frozen=True)
class IssuerKey:
    """A key as the issuer lists it. ``tag`` is the version id it was minted for."""

    issuer_ref: str
    tag: str | None
    active: bool
    created: datetime | None = None


class UsageStatus(StrEnum):
    SEEN = "seen"  # the source saw the key (last_seen is set)
    NOT_SEEN = "not-seen"  # the source is complete and did not see it
    UNKNOWN = "unknown"  # the source cannot tell (unreachable, not covering the window)
    NOT_MEASURED = "not-measured"  # no usage source is configured: the overlap alone decides


@dataclass(frozen=True)
class KeyUsage:
    """A probe's answer for one key id."""

    status: UsageStatus
    last_seen: datetime | None = None
    count: int = 0
    clients: tuple[str, ...] = ()
    detail: str = ""
    rejected: int = 0  # of ``count``, attempts the verifier rejected (failed-auth watch)


@dataclass(frozen=True)
class Lease:
    """A held lease lock. ``token`` increases with each acquisition (fencing)."""

    credential: str
    holder: str
    token: int
    acquired: datetime
    expires: datetime


@dataclass(frozen=True)
class Event:
    """A notification. Carries metadata only, never a key value."""

    kind: str  # started, published, promoted, still-used, retired, destroyed, completed, failed
    credential: str
    at: datetime
    severity: str = "info"  # info | warning | critical
    rotation_id: str | None = None
    version_id: str | None = None
    key_id: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "credential": self.credential,
            "at": _iso(self.at),
            "severity": self.severity,
            "rotation_id": self.rotation_id,
            "version_id": self.version_id,
            "key_id": self.key_id,
            "message": self.message,
            "data": self.data,
        }


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a trailing Z, or None."""
    return _iso(value)


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`iso`; naive values are taken as UTC."""
    return _parse_iso(value)


class Outcome(StrEnum):
    DONE = "done"  # the rotation finished in this call
    WAITING = "waiting"  # in flight; nothing to do before ``until``
    IDLE = "idle"  # nothing in flight, nothing due
    PLANNED = "planned"  # dry run: what would happen
    ATTENTION = "attention"  # a human must look
    FAILED = "failed"
    LOCKED = "locked"
    PREEMPTED = "preempted"  # an emergency took the lease; this run stopped writing


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
    finished: bool = False  # a rotation reached a terminal phase during this call
    revoked_after: float | None = None  # emergency: seconds from start to old key retired

    @property
    def exit_code(self) -> ExitCode:
        if self.outcome is Outcome.FAILED:
            return ExitCode.FAILED
        if self.outcome in (Outcome.LOCKED, Outcome.PREEMPTED):
            return ExitCode.LOCKED
        if self.outcome is Outcome.ATTENTION or self.attention:
            return ExitCode.ATTENTION
        return ExitCode.OK


def overall_exit(results: Sequence[Result], *, locked_is_ok: bool = False) -> ExitCode:
    """The exit code of a command over several credentials: the most serious wins
    (failed, then locked or pre-empted, then attention). ``locked_is_ok``: a
    credential locked by another runner is that runner's to advance (``run``)."""
    codes = {r.exit_code for r in results}
    if locked_is_ok:
        codes -= (
            {ExitCode.LOCKED} if not any(r.outcome is Outcome.PREEMPTED for r in results) else set()
        )
    for code in (ExitCode.FAILED, ExitCode.LOCKED, ExitCode.ATTENTION):
        if code in codes:
            return code
    return ExitCode.OK
