"""The record document a remote store keeps beside a credential when its server has
no place of its own for rotatectl's metadata (AWS Secrets Manager, SSM Parameter
Store): every version's metadata, the rotation record with its earlier ones, and
the lease lock, in one JSON document written with compare-and-set (:mod:`._cas`).

:class:`RecordDocument` holds what such documents share: the fields, the reads, the
rotation-record and lease changes (decided with :mod:`.rules`), and the parts of the
JSON form (the lock, the format header, compacted earlier rotations). Each store's
document is a dataclass subclass adding where its values live and its write sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from ..errors import StoreError
from ..machine import current_version, find_version
from ..model import Lease, Rotation, Version, iso, parse_iso
from .rules import LockRow, check_revision, landed, plan_acquire, plan_release, plan_renew


@dataclass
class RecordDocument:
    """A credential's record (see the module docstring)."""

    path: str
    versions: list[Version] = field(default_factory=list)
    rotation: Rotation | None = None
    revision: int = 0  # the rotation record's: save_rotation's compare-and-set
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier rotations
    lock: LockRow | None = None

    @property
    def is_credential(self) -> bool:
        """A lock alone does not make a credential (only versions or a rotation)."""
        return bool(self.versions) or self.rotation is not None

    def find(self, version_id: str) -> Version | None:
        return find_version(self.versions, version_id)

    def current(self) -> Version | None:
        return current_version(self.versions)

    def with_rotation(self, rotation: Rotation, expected_revision: int, keep: int) -> Self:
        """``rotation`` saved as the latest record at the next revision; the one it
        replaces (another id) joins the ``keep`` earlier ones. ConflictError when the
        revision is not ``expected_revision``."""
        check_revision(self.path, self.revision, expected_revision)
        history = self.history
        if self.rotation is not None and self.rotation.id != rotation.id:
            history = [*history, self.rotation.to_dict()][-keep:]
        return replace(self, rotation=rotation, revision=self.revision + 1, history=history)

    def saving(self, new: Self | None, save: tuple[Rotation, int] | None, keep: int) -> Self | None:
        """``new`` (a version change decided on this record; None: no change) with
        ``save``'s rotation record and expected revision written in the same document
        (SecretStore.commit). None when there is nothing to write: no change and no
        record, or this very commit landed already (its reply was lost)."""
        if save is None:
            return new
        rotation, expected = save
        if new is None and landed(self.rotation, self.revision, rotation, expected):
            return None
        return (new or self).with_rotation(rotation, expected, keep)

    def with_lease(self, lease: Lease) -> Self:
        """The lock held as ``lease`` (acquired, stolen or renewed by the rules)."""
        return replace(self, lock=LockRow(lease.holder, lease.token, lease.acquired, lease.expires))

    def released(self, lease: Lease) -> Self | None:
        """The lock released by ``lease``'s holder, keeping its token (the next lease
        must get a larger one); None when it already is. ConflictError (the rules')
        when the lease is stale."""
        if not plan_release(self.lock, lease):
            return None
        return replace(self, lock=LockRow(None, lease.token, None, None))


class RecordLease:
    """The lease lock of a store that keeps it in its :class:`RecordDocument`
    (SecretStore's acquire/renew/release), decided by the shared rules and written
    by the store's compare-and-set ``_mutate``."""

    if TYPE_CHECKING:
        # The store's read-decide-write (see _cas.mutate); ``decide`` maps its record
        # document to a new one or None.
        def _mutate(self, path: str, op: str, decide: Any) -> Any: ...

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        return self._lease(
            path, "lock", lambda row: plan_acquire(path, row, holder, ttl, now, steal_token)
        )

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        return self._lease(
            lease.credential, "renew lock of", lambda row: plan_renew(row, lease, ttl, now)
        )

    def release_lock(self, lease: Lease) -> None:
        self._mutate(lease.credential, "release lock of", lambda record: record.released(lease))

    def _lease(self, path: str, op: str, plan: Callable[[LockRow | None], Lease]) -> Lease:
        leases: list[Lease] = []

        def decide(record: RecordDocument) -> RecordDocument:
            leases.append(plan(record.lock))
            return record.with_lease(leases[-1])

        self._mutate(path, op, decide)
        return leases[-1]


def encode_lock(lock: LockRow | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    return {
        "holder": lock.holder,
        "token": lock.token,
        "acquired": iso(lock.acquired),
        "expires": iso(lock.expires),
    }


def decode_lock(raw: dict[str, Any] | None) -> LockRow | None:
    if raw is None:
        return None
    return LockRow(
        raw.get("holder"),
        int(raw["token"]),
        parse_iso(raw.get("acquired")),
        parse_iso(raw.get("expires")),
    )


def check_header(doc: Any, path: str, where: str, supported: int) -> dict[str, Any]:
    """``doc`` when it is a record of ``path`` in a format this rotatectl reads.
    ValueError when it is not a record of ``path``; StoreError when it is newer."""
    if not isinstance(doc, dict) or doc.get("rotatectl") is None:
        raise ValueError("not a rotatectl record")
    if int(doc["rotatectl"]) > supported:
        raise StoreError(
            f"{where}: record format {doc['rotatectl']} is newer than this rotatectl "
            f"supports ({supported}); upgrade rotatectl"
        )
    if doc.get("path") != path:
        raise ValueError(f"it belongs to path {doc.get('path')!r}")
    return doc


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """An earlier rotation record with only its first and last events (the audit log
    has the rest)."""
    events = record.get("history") or []
    if len(events) <= 2:
        return record
    return {**record, "history": [events[0], events[-1]]}
