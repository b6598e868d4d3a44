"""Read-only views for ``status`` and friends: what a credential looks like now."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from .errors import RotatectlError
from .machine import next_due, person_waiting, retry_after
from .model import Phase, Policy, Rotation, Version, VersionState, iso

if TYPE_CHECKING:  # the runner's imports (retries, hooks, tests) are not needed to report
    from .model import Result
    from .ports import SecretStore, Snapshot, Target


class StatusSource(Protocol):
    """What reading a credential's status needs: a runner Target, or a Workspace view."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def store(self) -> SecretStore: ...
    @property
    def store_name(self) -> str: ...
    @property
    def policy(self) -> Policy: ...


@dataclass(frozen=True)
class CredentialStatus:
    """A credential's versions, in-flight rotation and next due time."""

    name: str
    store: str
    path: str
    versions: tuple[Version, ...]
    rotation: Rotation | None
    next_due: datetime | None
    now: datetime
    error: str = ""
    drift: tuple[str, ...] = ()
    # Several destinations: each one's current version number (or its error).
    destinations: tuple[tuple[str, int | str | None], ...] = ()
    retry_after: datetime | None = None  # run's backoff after a failed rotation
    window_opens: datetime | None = None  # due, but the rotation window is closed now

    @property
    def disagree(self) -> bool:
        return len({d for _, d in self.destinations}) > 1

    @property
    def in_flight(self) -> bool:
        return self.rotation is not None and not self.rotation.phase.terminal

    @property
    def person(self) -> tuple[str, datetime, str] | None:
        """What a person must do for the rotation to go on (a ``manual`` issuer): the
        ask, since when, and the instructions; None when nobody is waited for."""
        return person_waiting(self.rotation)

    @property
    def needs_attention(self) -> bool:
        """What ``status -q`` shows: an error, drift, destinations that disagree, a
        failed rotation that ``run`` retries after its backoff, or a person waited for."""
        return bool(
            self.error
            or self.drift
            or self.disagree
            or self.retry_after is not None
            or self.person is not None
        )

    @property
    def current(self) -> Version | None:
        return next((v for v in self.versions if v.state is VersionState.CURRENT), None)

    def to_dict(self) -> dict[str, Any]:
        current, person = self.current, self.person
        return {
            "name": self.name,
            "store": self.store,
            "path": self.path,
            "current_version": current.number if current else None,
            "current_key_id": current.key_id if current else None,
            "versions": [v.to_dict() for v in self.versions],
            "accepted_key_ids": [v.key_id for v in self.versions if v.state.accepted],
            "rotation": self.rotation.to_dict() if self.rotation else None,
            "in_flight": self.in_flight,
            "next_due": iso(self.next_due),
            "due": self.next_due is None or self.next_due <= self.now,
            "error": self.error or None,
            "drift": list(self.drift),
            "retry_after": iso(self.retry_after),
            "window_opens": iso(self.window_opens),
            "waiting_for_person": None
            if person is None
            else {"ask": person[0], "since": iso(person[1]), "instructions": person[2]},
            "last_failure": self.rotation.failure
            if self.rotation is not None and self.rotation.failed
            else None,
            "destinations": [
                {"store": name, "current_version": cur if not isinstance(cur, str) else None}
                | ({"error": cur} if isinstance(cur, str) else {})
                for name, cur in self.destinations
            ],
        }


def snapshots(sources: Sequence[StatusSource], *, locks: bool = True) -> dict[str, Snapshot]:
    """Snapshots by credential name, one ``snapshot_many`` per store (the local
    store: one transaction; AWS: 20 records a call; others: a loop). Credentials
    of a store whose batch read failed are left out: read them one at a time
    (where a failure stays that credential's own). ``locks`` False: the lock
    flag is not needed (a store may skip reading it).
    """
    by_store: dict[int, list[StatusSource]] = {}
    for source in sources:
        by_store.setdefault(id(source.store), []).append(source)
    found: dict[str, Snapshot] = {}
    for group in by_store.values():
        try:
            read = group[0].store.snapshot_many([s.path for s in group], locks=locks)
        except RotatectlError:
            continue
        found.update((s.name, read[s.path]) for s in group)
    return found


def collect_statuses(sources: Sequence[StatusSource], now: datetime) -> list[CredentialStatus]:
    """:func:`collect_status` of many credentials, with batched reads where the store can."""
    from .drift import detect_many

    batched = snapshots(sources, locks=False)
    # detect_many reads only ``name``, ``store`` and ``path``: any status source will do.
    drifts = detect_many(
        cast("Sequence[Target]", sources), {name: snap[0] for name, snap in batched.items()}
    )
    return [collect_status(s, now, batched.get(s.name), drifts.get(s.name)) for s in sources]


def collect_status(
    target: StatusSource,
    now: datetime,
    snapshot: Snapshot | None = None,
    found_drift: Sequence[str] | None = None,
) -> CredentialStatus:
    """Read one credential's state. Store errors become ``error``, not exceptions.

    ``snapshot`` is its versions and rotation read already (see :func:`snapshots`),
    ``found_drift`` its drift checked already (see :func:`rotatectl.drift.detect_many`).
    """
    from .drift import detect

    try:
        if snapshot is None:
            versions = tuple(target.store.versions(target.path))
            rotation, _ = target.store.load_rotation(target.path)
        else:
            versions, rotation = tuple(snapshot[0]), snapshot[1]
        if found_drift is not None and snapshot is not None:
            drift = tuple(found_drift)
        else:
            # detect reads only ``store`` and ``path``: any status source will do.
            drift = tuple(detect(cast("Target", target), versions))
    except RotatectlError as exc:
        return CredentialStatus(
            target.name, target.store_name, target.path, (), None, None, now, error=str(exc)
        )
    destinations: list[tuple[str, int | str | None]] = []
    if "destinations" in target.store.features():
        for name, seen in target.store.views(target.path):
            if isinstance(seen, str):
                destinations.append((name, seen))
            else:
                cur = next((v.number for v in seen if v.state is VersionState.CURRENT), None)
                destinations.append((name, cur))
    due = next_due(versions, target.policy)
    retry = retry_after(rotation, target.policy)
    window = target.policy.window
    closed = due is not None and due <= now and window is not None and not window.contains(now)
    return CredentialStatus(
        name=target.name,
        store=target.store_name,
        path=target.path,
        versions=versions,
        rotation=rotation,
        next_due=due,
        now=now,
        destinations=tuple(destinations),
        drift=drift,
        retry_after=retry if retry is not None and retry > now else None,
        window_opens=window.next_open(now) if closed and window is not None else None,
    )


def result_to_dict(result: Result) -> dict[str, Any]:
    usage = result.usage
    return {
        "credential": result.credential,
        "outcome": result.outcome.value,
        "exit_code": int(result.exit_code),
        "message": result.message,
        "phase": result.phase.value if result.phase else None,
        "rotation_id": result.rotation_id,
        "until": iso(result.until),
        "steps": result.steps,
        "warnings": result.warnings,
        "revoked_after_seconds": None
        if result.revoked_after is None
        else round(result.revoked_after, 3),
        "attention": result.attention,
        "old_key_usage": None
        if usage is None
        else {
            "status": usage.status.value,
            "last_seen": iso(usage.last_seen),
            "count": usage.count,
            "clients": list(usage.clients),
            "detail": usage.detail,
        },
    }


@dataclass(frozen=True)
class Span:
    """One stretch of a version's life in one state."""

    state: VersionState
    start: datetime
    end: datetime


def version_spans(version: Version, now: datetime) -> list[Span]:
    """The states a version went through, from its timestamps, oldest first."""
    marks = [(version.created, VersionState.PENDING)]
    for at, state in (
        (version.promoted, VersionState.CURRENT),
        (version.demoted, VersionState.PREVIOUS),
        (version.retired, VersionState.RETIRED),
        (version.destroyed, VersionState.DESTROYED),
    ):
        if at is not None:
            marks.append((at, state))
    marks.sort(key=lambda m: m[0])
    spans = []
    for i, (at, state) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else now
        spans.append(Span(state, at, max(end, at)))
    return spans


@dataclass(frozen=True)
class History:
    """A credential's versions with their spans, and its rotations, oldest first."""

    name: str
    versions: tuple[tuple[Version, tuple[Span, ...]], ...]
    rotations: tuple[Rotation, ...]
    now: datetime

    def compromised(self, version: Version) -> bool:
        """Marked compromised, or the key an emergency replaced (a leaked key)."""
        leaked = {vid for r in self.rotations for vid in r.leaked}
        return version.compromised or version.version_id in leaked

    def only(
        self, version: Callable[[Version], bool], rotation: Callable[[Rotation], bool]
    ) -> History:
        """The same history with only the versions and rotations the predicates keep."""
        return replace(
            self,
            versions=tuple((v, spans) for v, spans in self.versions if version(v)),
            rotations=tuple(r for r in self.rotations if rotation(r)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "credential": self.name,
            "versions": [
                {
                    "number": v.number,
                    "key_id": v.key_id,
                    "state": v.state.value,
                    "compromised": self.compromised(v),
                    "spans": [
                        {"state": s.state.value, "from": iso(s.start), "to": iso(s.end)}
                        for s in spans
                    ],
                }
                for v, spans in self.versions
            ],
            "rotations": [
                {
                    "id": r.id,
                    "kind": r.kind.value,
                    "phase": r.phase.value,
                    "started": iso(r.started),
                    "finished": iso(r.finished),
                    "reason": r.reason,
                    "supersedes": r.supersedes,
                    "new_version_id": r.new_version_id,
                    "old_version_id": r.old_version_id,
                }
                for r in self.rotations
            ],
        }


def collect_history(target: Target, now: datetime) -> History:
    """Versions and every rotation record the store keeps (stores without a
    history of rotation records give only the latest one)."""
    versions = target.store.versions(target.path)
    latest, _ = target.store.load_rotation(target.path)
    rotations = list(target.store.rotation_history(target.path))
    if latest is not None:
        rotations.append(latest)
    return History(
        target.name,
        tuple((v, tuple(version_spans(v, now))) for v in versions),
        tuple(mark_superseded(rotations)),
        now,
    )


def mark_superseded(rotations: Sequence[Rotation]) -> list[Rotation]:
    """``rotations`` with each record that a later one superseded (an emergency or a
    rollback took over) before it finished shown in phase SUPERSEDED: the store
    keeps it as it was when it stopped; its successor's ``supersedes`` says why."""
    replaced = {r.supersedes for r in rotations if r.supersedes}
    return [
        replace(r, phase=Phase.SUPERSEDED) if r.id in replaced and not r.phase.terminal else r
        for r in rotations
    ]
