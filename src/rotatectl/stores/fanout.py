"""Several destinations for one credential: e.g. Vault for services, AWS for Lambdas.

The first destination is the *primary*: it holds the rotation record and the
lease lock, and its view of the versions is the runner's. Every change goes
to the secondaries first and to the primary last, so the primary changing
means every destination has changed: a destination that is down makes the
step fail before the runner records progress, and the rotation holds
(retrying, then reporting) instead of promoting anywhere.

A secondary that missed a publish (it was down) gets the version copied from
the primary by :meth:`FanoutStore.replicate` before the propagation delay
starts, so the new key is pending in every destination for the whole delay
before it is promoted in any (invariant 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..errors import ConflictError, RotatectlError, StoreError
from ..model import AcceptedKey, Lease, Rotation, Version, VersionState
from ..ports import SecretStore, Snapshot, StoreBase

T = TypeVar("T")


class FanoutStore(StoreBase):
    FEATURES = frozenset({"destinations", "drift"})
    # Answered by the primary: the fan-out has them exactly when the primary does.
    FROM_PRIMARY = frozenset({"state", "batched-reads", "history"})

    """A SecretStore over ``destinations`` (name, store); the first is the primary."""

    def __init__(self, destinations: Sequence[tuple[str, SecretStore]]) -> None:
        if len(destinations) < 2:
            raise ValueError("a fan-out needs at least two destinations")
        self.destinations = list(destinations)
        self.primary_name, self.primary = destinations[0]
        self.secondaries = list(destinations[1:])
        features = self.FEATURES | (self.primary.features() & self.FROM_PRIMARY)
        if any("access-check" in store.features() for _, store in self.destinations):
            features |= {"access-check"}
        if all("rolling-window" in store.features() for _, store in self.destinations):
            features |= {"rolling-window"}
        self._features = features
        self.read_batch = self.primary.read_batch  # its snapshots are the primary's

    def features(self) -> frozenset[str]:
        """Its own (destinations; drift, which checks every secondary against the
        primary), the primary's reads (state, batched reads, history), access-check
        when any destination checks its access, rolling-window when all keep one."""
        return self._features

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _at(name: str, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` on destination ``name``, naming it in any error."""
        try:
            return fn(*args)
        except RotatectlError as exc:
            if isinstance(exc, StoreError):
                named = type(exc)(f"destination {name}: {exc}", retryable=exc.retryable)
                named.retried = exc.retried
                raise named from exc
            raise

    def views(self, path: str) -> list[tuple[str, list[Version] | str]]:
        """Each destination's versions, or its error text (for ``status``)."""
        out: list[tuple[str, list[Version] | str]] = []
        for name, store in self.destinations:
            try:
                out.append((name, store.versions(path)))
            except RotatectlError as exc:
                out.append((name, str(exc)))
        return out

    def replicate(self, path: str, version_id: str) -> None:
        """Copy ``version_id`` from the primary to every secondary that lacks it, as pending."""
        source = next((v for v in self.primary.versions(path) if v.version_id == version_id), None)
        if source is None:
            return
        pending = replace(source, state=VersionState.PENDING)
        value: str | None = None
        for name, store in self.secondaries:
            present = self._at(name, store.versions, path)
            if any(v.version_id == version_id for v in present):
                continue
            if value is None:
                value = self.primary.read_value(path, version_id)
            self._at(name, store.publish, path, pending, value)

    # -- SecretStore: writes go to the secondaries first ---------------------

    def publish(self, path: str, version: Version, value: str) -> None:
        # The primary first here: it then holds the value, so a secondary that
        # fails can be filled in from it by replicate() instead of re-minting.
        self.primary.publish(path, version, value)
        for name, store in self.secondaries:
            self._at(name, store.publish, path, version, value)

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        self.replicate(path, version_id)
        for name, store in self.secondaries:
            versions = self._at(name, store.versions, path)
            here = next((v.version_id for v in versions if v.state is VersionState.CURRENT), None)
            if here not in (expected_current, version_id, None):
                raise ConflictError(
                    f"destination {name}: current version is {here}, expected "
                    f"{expected_current}; the stores disagree (changed outside rotatectl?)"
                )
            target = next((v for v in versions if v.version_id == version_id), None)
            if target is not None and target.state is VersionState.RETIRED:
                # A rollback reinstated it in the primary; mirror that first.
                self._at(
                    name,
                    store.set_state,
                    path,
                    version_id,
                    VersionState.PENDING,
                    VersionState.RETIRED,
                    at,
                )
            expected_here = here if here != version_id else expected_current
            self._at(name, store.promote, path, version_id, expected_here, at)
        self.primary.promote(path, version_id, expected_current, at)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        for name, store in self.secondaries:
            versions = self._at(name, store.versions, path)
            if any(v.version_id == version_id for v in versions):
                self._at(name, store.set_state, path, version_id, state, expected, at)
        self.primary.set_state(path, version_id, state, expected, at)

    # -- SecretStore: the primary answers ------------------------------------

    def list_paths(self) -> list[str]:
        return self.primary.list_paths()

    def versions(self, path: str) -> list[Version]:
        return self.primary.versions(path)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        return self.primary.read_value(path, version_id)

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return self.primary.accepted_keys(path, credential)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        return self.primary.load_rotation(path)

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        return self.primary.save_rotation(path, rotation, expected_revision)

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        return self.primary.acquire_lock(path, holder, ttl, now, steal_token)

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        return self.primary.renew_lock(lease, ttl, now)

    def release_lock(self, lease: Lease) -> None:
        self.primary.release_lock(lease)

    # -- optional features: forwarded (keyring's chainer, for stores) ------------

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        return self.primary.state(path)

    def snapshot_many(self, paths: Sequence[str], *, locks: bool = True) -> dict[str, Snapshot]:
        return self.primary.snapshot_many(paths, locks=locks)

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        return self.primary.current_values_many(paths)

    def rotation_history(self, path: str) -> list[Rotation]:
        return self.primary.rotation_history(path)

    def drift(self, path: str) -> list[str]:
        """Every destination's own drift, and each secondary's current value checked
        against the primary's current version (the generic check covers the primary).
        A secondary that cannot be read is left out here: ``views`` reports it, and
        any write to it fails and holds the rotation."""
        return self.drift_many([path]).get(path, [])

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        from ..drift import value_problems

        found: dict[str, list[str]] = {p: [] for p in paths}
        for p, problems in self._at(self.primary_name, self.primary.drift_many, paths).items():
            found[p] += problems
        for name, store in self.secondaries:
            try:
                values = store.current_values_many(paths)
                theirs = store.drift_many(paths)
            except RotatectlError:
                continue
            for p, problems in theirs.items():
                found[p] += [f"destination {name}: {x}" for x in problems]
            for p in paths:
                mine = value_problems(self.primary.versions(p), values.get(p))
                found[p] += [f"destination {name}: {x}" for x in mine]
        return found

    def client_value(self, path: str) -> str | None:
        """The first secondary's client value that is not the primary's current key
        (drift made there), else the primary's: what adopting drift takes."""
        from .. import secretformat
        from ..machine import current_version

        current = current_version(self.primary.versions(path))
        for name, store in self.secondaries:
            value = self._at(name, store.client_value, path)
            if value is not None and (current is None or not secretformat.matches(current, value)):
                return value
        return self._at(self.primary_name, self.primary.client_value, path)

    def adopt_value(self, path: str, version: Version, value: str) -> None:
        """The destinations whose clients read ``value`` record it in place; the others
        get it published (the primary first, as :meth:`publish`)."""
        for name, store in self.destinations:
            if any(
                v.version_id == version.version_id for v in self._at(name, store.versions, path)
            ):
                continue  # an interrupted adoption got this far
            if self._at(name, store.client_value, path) == value:
                self._at(name, store.adopt_value, path, version, value)
            else:
                self._at(name, store.publish, path, version, value)

    def adopt(self, path: str, at: datetime) -> None:
        """Every destination takes the rest of its layout as the truth."""
        for name, store in self.destinations:
            self._at(name, store.adopt, path, at)

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Each drifted destination puts rotatectl's state back; one that keeps a single
        copy gets the current value from the primary."""
        from ..drift import value_problems
        from ..machine import current_version

        versions = self.primary.versions(path)
        current = current_version(versions)
        for name, store in self.destinations:
            seen = self._at(name, store.client_value, path)
            if not self._at(name, store.drift, path) and not value_problems(versions, seen):
                continue
            mine = value
            if mine is None and store is not self.primary and current is not None:
                mine = self.primary.read_value(path, current.version_id)
            self._at(name, store.restore, path, at, mine)

    def check_access(self, paths: Sequence[str] = ()) -> list[str]:
        return [
            f"destination {name}: {problem}"
            for name, store in self.destinations
            for problem in store.check_access(paths)
        ]

    def close(self) -> None:
        """Closing is the Workspace's job: the destinations are shared stores."""
