"""An in-memory SecretStore: the fake the engine tests run against.

It passes the same contract suite as the real stores
(:class:`rotatectl.testing.store_contract.StoreContract`) and decides with the
same rules as the local store (the ``plan_*`` functions), which is what makes
it a trustworthy stand-in.

It is not an installed plugin (nothing survives the process, so a ``rotate`` on
it would say "done" and lose the key): tests construct it, or register it
themselves where they need it behind a config.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Self

from .. import secretformat
from ..errors import ConflictError, NotFoundError
from ..machine import current_version
from ..model import AcceptedKey, Lease, Rotation, Version, VersionState
from ..ports import StoreBase, VersionChange, apply_change
from ..registry import AdapterContext, check_settings
from ..stores.rules import (
    SINGLE_COPY,
    LockRow,
    accepted,
    check_has_value,
    check_revision,
    landed,
    lost_values,
    plan_acquire,
    plan_promote,
    plan_publish,
    plan_release,
    plan_renew,
    plan_set_state,
)


class MemoryStore(StoreBase):
    FEATURES = frozenset({"drift", "history", "rolling-window", "atomic-record"})

    """A thread-safe SecretStore held in dicts. Nothing survives the process."""

    def __init__(self) -> None:
        self._mutex = threading.RLock()  # commit holds it across a change and a save
        self._versions: dict[str, dict[str, Version]] = {}
        self._values: dict[tuple[str, str], str] = {}
        self._rotations: dict[str, tuple[Rotation, int]] = {}
        self._history: dict[str, list[Rotation]] = {}
        self._locks: dict[str, LockRow] = {}

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Build from a config table; the memory store takes no settings."""
        check_settings(settings, ctx, {})
        return cls()

    def __repr__(self) -> str:
        return f"MemoryStore(paths={self.list_paths()!r})"

    def _sorted(self, path: str) -> list[Version]:
        return sorted(self._versions.get(path, {}).values(), key=lambda v: v.number)

    def _put(self, path: str, version: Version) -> None:
        self._versions.setdefault(path, {})[version.version_id] = version

    def list_paths(self) -> list[str]:
        with self._mutex:
            return sorted(set(self._versions) | set(self._rotations))

    def versions(self, path: str) -> list[Version]:
        with self._mutex:
            return self._sorted(path)

    def publish(self, path: str, version: Version, value: str) -> None:
        with self._mutex:
            new = plan_publish(path, self._sorted(path), version)
            if new is not None:
                self._put(path, new)
                self._values[(path, new.version_id)] = value

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        with self._mutex:
            changed = plan_promote(path, self._sorted(path), version_id, expected_current, at)
            if changed:
                check_has_value(path, version_id, (path, version_id) in self._values)
            for version in changed:
                self._put(path, version)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        with self._mutex:
            new = plan_set_state(path, self._sorted(path), version_id, state, expected, at)
            if new is not None:
                self._put(path, new)
                if new.state is VersionState.DESTROYED:
                    self._values.pop((path, version_id), None)

    # -- DriftAware, and a way for tests to make drift --------------------------

    def tamper(self, path: str, value: str) -> None:
        """Test helper: overwrite the current value behind rotatectl's back."""
        with self._mutex:
            current = next(
                v for v in self._versions[path].values() if v.state is VersionState.CURRENT
            )
            self._values[(path, current.version_id)] = value

    def drift(self, path: str) -> list[str]:
        return []

    def adopt(self, path: str, at: datetime) -> None:
        """As the local store: a replaced version whose value changed in place loses it."""
        with self._mutex:
            values = {vid: v for (p, vid), v in self._values.items() if p == path}
            for version_id in lost_values(self._sorted(path), values):
                self._values.pop((path, version_id), None)

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """As the local store: ``value`` (another copy's) put back, else ConflictError."""
        with self._mutex:
            current = current_version(self._sorted(path))
            if value is None or current is None:
                raise ConflictError(f"{path}: {SINGLE_COPY}")
            if not secretformat.matches(current, value):
                raise ConflictError(f"{path}: the value to restore is not v{current.number}'s")
            self._values[(path, current.version_id)] = value

    def read_value(self, path: str, version_id: str | None = None) -> str:
        with self._mutex:
            found = self._versions.get(path, {})
            if version_id is None:
                version = next((v for v in found.values() if v.state is VersionState.CURRENT), None)
            else:
                version = found.get(version_id)
            if version is None:
                what = f"version {version_id}" if version_id else "current version"
                raise NotFoundError(f"{path}: no {what}")
            value = self._values.get((path, version.version_id))
        if value is None:
            raise NotFoundError(f"{path}: the value of version {version.version_id} was destroyed")
        return value

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        with self._mutex:
            rotation, revision = self._rotations.get(path, (None, 0))
        return rotation, revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        with self._mutex:
            old, revision = self._rotations.get(path, (None, 0))
            check_revision(path, revision, expected_revision)
            if old is not None and old.id != rotation.id:
                self._history.setdefault(path, []).append(old)
            self._rotations[path] = (rotation, revision + 1)
        return revision + 1

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        """SecretStore.commit under one hold of the lock: the revision is checked before
        the change, which changes nothing when it is refused."""
        with self._mutex:
            saved, revision = self._rotations.get(path, (None, 0))
            if landed(saved, revision, rotation, expected_revision):
                return revision
            check_revision(path, revision, expected_revision)
            apply_change(self, path, change)
            return self.save_rotation(path, rotation, expected_revision)

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` (replaced by a newer rotation), oldest first."""
        with self._mutex:
            return list(self._history.get(path, ()))

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        with self._mutex:
            lease = plan_acquire(path, self._locks.get(path), holder, ttl, now, steal_token)
            self._locks[path] = LockRow(holder, lease.token, lease.acquired, lease.expires)
        return lease

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        with self._mutex:
            renewed = plan_renew(self._locks.get(lease.credential), lease, ttl, now)
            self._locks[lease.credential] = LockRow(
                renewed.holder, renewed.token, renewed.acquired, renewed.expires
            )
        return renewed

    def release_lock(self, lease: Lease) -> None:
        with self._mutex:
            row = self._locks.get(lease.credential)
            if plan_release(row, lease):
                self._locks[lease.credential] = LockRow(None, lease.token, None, None)

    def close(self) -> None:
        """Nothing to release; kept for the Protocol."""
