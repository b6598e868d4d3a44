"""Ports: the narrow interfaces the runner drives. Adapters implement them.

Stores are addressed by ``path`` (the credential's location in that store;
by default the credential name). Every method raises only
:mod:`rotatectl.errors` types; SDK exceptions are translated at the adapter
boundary. Timestamps are passed in (``at``/``now``) so that stores and
issuers never read a clock of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar, cast, runtime_checkable

from .model import (
    AcceptedKey,
    Event,
    IssuedKey,
    IssuerKey,
    KeyUsage,
    Lease,
    Policy,
    Rotation,
    Version,
    VersionState,
    utcnow,
)
from .secretformat import BARE, SecretFormat

T = TypeVar("T")

if TYPE_CHECKING:
    from .hooks import HookSpec
    from .pretest import PrePromotionTest


@runtime_checkable
class SecretStore(Protocol):
    """Where versions, values, the rotation record and the lease lock live."""

    def list_paths(self) -> list[str]:
        """Every path this store holds versions or a rotation record for, sorted."""
        ...

    def versions(self, path: str) -> list[Version]:
        """All versions of ``path`` (any state), ordered by ``number``. [] if none."""
        ...

    def publish(self, path: str, version: Version, value: str) -> None:
        """Add ``version`` (state PENDING) with its secret ``value``.

        Idempotent: if ``version.version_id`` already exists with the same
        fingerprint this is a no-op. Raises ConflictError if it exists with a
        different fingerprint or the number is taken by another version.
        """
        ...

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        """Make ``version_id`` current; the old current becomes PREVIOUS.

        Compare-and-set: raises ConflictError unless the current version is
        ``expected_current`` (None: there is no current). The target must be
        PENDING or PREVIOUS (a rollback). A no-op if it is already current and
        ``expected_current`` is PREVIOUS (a resumed promotion). NotFoundError if
        the version does not exist.
        """
        ...

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        """Move a non-current version from ``expected`` to ``state``.

        Used for retire (PREVIOUS/PENDING -> RETIRED), destroy
        (RETIRED -> DESTROYED, which wipes the value) and reinstate for a
        rollback (RETIRED -> PENDING: accepted again). A no-op if the version
        is already in ``state``; ConflictError if it is in any other state;
        NotFoundError if it does not exist. Never touches the current version.
        """
        ...

    def read_value(self, path: str, version_id: str | None = None) -> str:
        """The secret value of ``version_id``, or of the current version.

        NotFoundError if there is no such version or its value was destroyed.
        """
        ...

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        """The verifier view: pending, current and previous keys, hashes only."""
        ...

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        """The latest rotation record of ``path`` and its revision (0 if none)."""
        ...

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        """Write the rotation record if the revision is still ``expected_revision``.

        Returns the new revision; raises ConflictError otherwise. A record for
        a new rotation id replaces the previous one as "latest", which the
        store keeps in its history.
        """
        ...

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        """Take the lease lock for ``path``.

        Succeeds if the lock is free, expired, or held with token
        ``steal_token`` (the caller proved that holder is dead). The returned
        token is larger than any earlier one. Raises LockedError naming the
        holder otherwise.
        """
        ...

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        """Extend a held lease. ConflictError if the lease was lost (token moved)."""
        ...

    def release_lock(self, lease: Lease) -> None:
        """Release a held lease. ConflictError if the token is stale."""
        ...

    def close(self) -> None:
        """Release connections. Safe to call twice."""
        ...

    # -- optional features: declared here, defaults on StoreBase -----------------

    immutable_versions: bool
    """True when a version's value can never change once written (AWS): the
    store's own check of which version clients get then proves the value."""

    read_batch: int
    """How many credentials one of the store's batched reads takes (1: it reads them
    one by one): ``run --jobs`` gives each thread of its lock-free pass at least
    this many, and otherwise spreads the credentials over every thread."""

    def features(self) -> frozenset[str]:
        """The optional features this store implements itself (see STORE_FEATURES);
        the others work through StoreBase's defaults."""
        ...

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """``(versions(path), *load_rotation(path))``, read together where the store
        can (one transaction or request), so they agree."""
        ...

    def snapshot_many(self, paths: Sequence[str], *, locks: bool = True) -> dict[str, Snapshot]:
        """Each path's (versions, rotation record, revision, whether a lease is
        held); ``locks`` False: the flag is not needed (a store may skip it)."""
        ...

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        """Make ``change`` (what :meth:`publish`, :meth:`promote` or :meth:`set_state`
        would do, with their rules and errors) and save ``rotation`` as
        :meth:`save_rotation` would; the new revision.

        With the "atomic-record" feature both are one write: a ConflictError (the
        change refused, or the revision moved) leaves both as they were. Without it,
        the change is made first, then the record saved (two writes).
        """
        ...

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Each path's current value (None when it is gone), for the drift check."""
        ...

    def drift(self, path: str) -> list[str]:
        """Store-specific differences from rotatectl's records (labels, fields)."""
        ...

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`drift` of many paths."""
        ...

    def client_value(self, path: str) -> str | None:
        """The value a consumer reading ``path`` the ordinary way gets now (None: none),
        whether or not rotatectl wrote it: what drift adoption takes."""
        ...

    def adopt_value(self, path: str, version: Version, value: str) -> None:
        """Record ``value``, which clients already read though rotatectl did not write
        it, as the new PENDING ``version``, without changing what clients read. The
        caller (:func:`rotatectl.drift.resolve`) then promotes it like any new key."""
        ...

    def adopt(self, path: str, at: datetime) -> None:
        """After the client's key is adopted: take the rest of the store's layout as the
        truth (labels, views, copies), never changing what clients read. ConflictError
        when it cannot be recorded."""
        ...

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Put rotatectl's recorded state back. ``value``: the current version's value
        from another copy (a fan-out's primary), for a store that keeps a single copy.
        UsageError / ConflictError when it cannot."""
        ...

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records still kept, oldest first."""
        ...

    def views(self, path: str) -> list[tuple[str, list[Version] | str]]:
        """Several destinations: each one's versions, or its error text; [] for one."""
        ...

    def replicate(self, path: str, version_id: str) -> None:
        """Several destinations: copy ``version_id`` to those that lack it, as pending."""
        ...

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        """One line per call the store may not make (on ``paths`` too); [] when all are
        allowed. Never raises for a denial."""
        ...


# A credential's state as a batched read returns it: versions, latest rotation
# record, its revision, and whether someone holds the lease.
Snapshot = tuple[list[Version], "Rotation | None", int, bool]

# The optional store features, by the name ``SecretStore.features`` reports.
STORE_FEATURES = {
    "state": "versions and rotation record in one read",
    "batched-reads": "many credentials' snapshots and current values in a few reads",
    "drift": "store-specific drift checks (labels, fields), adopt and restore",
    "history": "earlier rotation records",
    "access-check": "a report of missing permissions",
    "destinations": "several destinations (views, replicate)",
    "rolling-window": "several previous keys accepted at once (keep_previous > 1)",
    "atomic-record": "a version change and the rotation record saved in one write (commit)",
}


@dataclass(frozen=True)
class Publish:
    """:meth:`SecretStore.publish` of ``version`` with its ``value``, as a change."""

    version: Version
    value: str = field(repr=False)


@dataclass(frozen=True)
class Promote:
    """:meth:`SecretStore.promote`, as a change."""

    version_id: str
    expected_current: str | None
    at: datetime


@dataclass(frozen=True)
class SetState:
    """:meth:`SecretStore.set_state`, as a change."""

    version_id: str
    state: VersionState
    expected: VersionState
    at: datetime


# One change to a credential's versions, for SecretStore.commit.
VersionChange = Publish | Promote | SetState


def dispatch(
    change: VersionChange,
    publish: Callable[[Version, str], T],
    promote: Callable[[str, str | None, datetime], T],
    set_state: Callable[[str, VersionState, VersionState, datetime], T],
) -> T:
    """Call the one of ``publish``, ``promote`` and ``set_state`` that makes ``change``,
    with its arguments in the order of the SecretStore method of that name (without
    the path)."""
    if isinstance(change, Publish):
        return publish(change.version, change.value)
    if isinstance(change, Promote):
        return promote(change.version_id, change.expected_current, change.at)
    return set_state(change.version_id, change.state, change.expected, change.at)


def apply_change(store: SecretStore, path: str, change: VersionChange) -> None:
    """Make ``change`` with the store's own method (publish, promote or set_state)."""
    dispatch(
        change,
        partial(store.publish, path),
        partial(store.promote, path),
        partial(store.set_state, path),
    )


class StoreBase:
    """Base class of every store: the optional features of :class:`SecretStore`
    with defaults built on the core methods (as keyring's backend base does).

    A store overrides a feature it does better and names it in ``FEATURES``;
    callers never probe for a method by name. The defaults: one-credential reads
    in a loop, no store-specific drift (the generic value check still runs), no
    history, no destinations, no access problems; the client's value is
    ``read_value``, an adopted value is published, no layout to adopt, restore
    refused. Adopting and restoring need the "drift" feature
    (:func:`rotatectl.drift.resolve` refuses them otherwise).
    """

    FEATURES: frozenset[str] = frozenset()
    immutable_versions: bool = False
    read_batch: int = 1

    # The core port, implemented by every store.
    def versions(self, path: str) -> list[Version]:
        raise NotImplementedError

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        raise NotImplementedError

    def read_value(self, path: str, version_id: str | None = None) -> str:
        raise NotImplementedError

    def publish(self, path: str, version: Version, value: str) -> None:
        raise NotImplementedError

    # The features, with defaults.
    def features(self) -> frozenset[str]:
        return self.FEATURES

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        rotation, revision = self.load_rotation(path)
        return self.versions(path), rotation, revision

    def snapshot_many(self, paths: Sequence[str], *, locks: bool = True) -> dict[str, Snapshot]:
        # Without a batched read the lease is not read: False lets `run` report a held
        # credential as what it would do, and the holder advances it.
        return {p: (*self.state(p), False) for p in paths}

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        # Two writes: the change, then the record (the order the steps had before).
        store = cast("SecretStore", self)
        apply_change(store, path, change)
        return store.save_rotation(path, rotation, expected_revision)

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        from .errors import NotFoundError

        values: dict[str, str | None] = {}
        for p in paths:
            try:
                values[p] = self.read_value(p)
            except NotFoundError:
                values[p] = None
        return values

    def drift(self, path: str) -> list[str]:
        return []

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        return {p: self.drift(p) for p in paths}

    def client_value(self, path: str) -> str | None:
        from .errors import NotFoundError

        try:
            return self.read_value(path)
        except NotFoundError:
            return None

    def adopt_value(self, path: str, version: Version, value: str) -> None:
        self.publish(path, version, value)

    def adopt(self, path: str, at: datetime) -> None:
        return None

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        from .errors import UsageError

        raise UsageError(f"{path}: this store cannot restore drift")

    def rotation_history(self, path: str) -> list[Rotation]:
        return []

    def views(self, path: str) -> list[tuple[str, list[Version] | str]]:
        return []

    def replicate(self, path: str, version_id: str) -> None:
        return None

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        return []


@runtime_checkable
class KeyIssuer(Protocol):
    """Who mints and revokes keys."""

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        """Mint a new key for ``version_id`` (tagged with it where the issuer can)."""
        ...

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        """Keys the issuer holds for ``credential``, or None when keys exist only
        in the store (nothing can be orphaned at the issuer)."""
        ...

    def disable(self, credential: str, issuer_ref: str) -> None:
        """Make the key stop working, reversibly. Idempotent."""
        ...

    def enable(self, credential: str, issuer_ref: str) -> None:
        """Undo :meth:`disable`. Idempotent."""
        ...

    def delete(self, credential: str, issuer_ref: str) -> None:
        """Delete the key for good. Idempotent: a missing key is not an error."""
        ...


# The optional issuer features, by the name an issuer's ``FEATURES`` declares.
ISSUER_FEATURES = {
    "keep": "create(..., keep=refs): an issuer with room for a fixed number of keys (two "
    "alternating database users) is told which keys must keep working",
    "setup": "setup(credential, apply=) -> steps: what the issuer's side needs set up once "
    "(roles, grants), said or done by `rotatectl db init [--dry-run]`",
    "promote": "promote(credential, issuer_ref, key): a service that holds one key at a time "
    "switches to this key at its promotion (before the store makes it current; idempotent); "
    "a key works only from its promotion, so the engine disables only keys once promoted "
    "and an abort re-promotes the current key instead",
    "store-only": "keys exist only in the store (list_keys is None; disable, enable and delete "
    "change nothing elsewhere): retiring one key needs no intent recorded before it",
}


def issuer_features(issuer: KeyIssuer) -> frozenset[str]:
    """The optional features ``issuer`` declares (``FEATURES``; none by default)."""
    declared: frozenset[str] = getattr(issuer, "FEATURES", frozenset())
    return declared


@runtime_checkable
class UsageProbe(Protocol):
    """Who tells whether a key is still used."""

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        """Last sighting of each key id within [since, now]; every id gets an answer.

        Raises ProbeError when the source cannot be read at all.
        """
        ...


@runtime_checkable
class Notifier(Protocol):
    """Who tells people. A failing notifier never fails a rotation."""

    def notify(self, event: Event) -> None:
        """Deliver ``event``. Raises NotifierError on failure."""
        ...


@runtime_checkable
class AccessCheck(Protocol):
    """Optional for any adapter: report what it may not do, for ``rotatectl check``."""

    def check_access(self) -> list[str]:
        """One line per problem (e.g. a denied call naming the missing permission);
        [] when every call the adapter needs is allowed. Never raises for a denial."""
        ...


def read_state(store: SecretStore, path: str) -> tuple[list[Version], Rotation | None, int]:
    """Versions, rotation record and its revision of ``path`` (``store.state``)."""
    return store.state(path)


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        return utcnow()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


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
    hooks: HookSpec | None = None
    pretest: PrePromotionTest | None = None
    secret_format: SecretFormat = BARE
