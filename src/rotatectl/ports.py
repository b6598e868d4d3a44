"""Ports: the narrow interfaces the runner drives. Adapters implement them.

Stores are addressed by ``path`` (the credential's location in that store;
by default the credential name). Every method raises only
:mod:`rotatectl.errors` types; SDK exceptions are translated at the adapter
boundary. Timestamps are passed in (``at``/``now``) so that stores and
issuers never read a clock of their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

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


@runtime_checkable
class DriftAware(Protocol):
    """Optional for a store: find and repair changes made outside rotatectl."""

    def drift(self, path: str) -> list[str]:
        """Store-specific differences from rotatectl's records (labels, fields); [] if none."""
        ...

    def adopt(self, path: str, at: datetime) -> None:
        """Take the store's state as the truth: record it as rotatectl's."""
        ...

    def restore(self, path: str, at: datetime) -> None:
        """Put rotatectl's recorded state back. ConflictError when it cannot."""
        ...


@runtime_checkable
class StateReader(Protocol):
    """Optional for a store: a credential's versions and rotation record in one read."""

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """``(versions(path), *load_rotation(path))``, read together (one
        transaction or request where the store allows), so they agree."""
        ...


def read_state(store: SecretStore, path: str) -> tuple[list[Version], Rotation | None, int]:
    """Versions, rotation record and its revision of ``path``: one
    :class:`StateReader` read when the store has it, two reads otherwise."""
    if isinstance(store, StateReader):
        return store.state(path)
    rotation, revision = store.load_rotation(path)
    return store.versions(path), rotation, revision


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
