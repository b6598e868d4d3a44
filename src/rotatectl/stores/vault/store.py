"""The store itself: :class:`VaultStore`, the SecretStore methods on the records.

Write ordering (crash safety)
-----------------------------
Each step is one check-and-set write; a crash between two of them leaves a
state that the next call completes (every mutating call first *settles*: it
finishes a recorded promotion).

- publish: value path, then index. Before the index write the value is
  invisible (no verifier accepts it, no client sees it); a retry writes a new
  KV version of the value path, and the index names the KV version that
  belongs to the version, so an earlier attempt's value is never mistaken
  for it (and is destroyed once the index is written).
- promote: (1) index with a ``promotion`` intent, states unchanged; (2) the
  client path; (3) index with the new states, intent cleared. Both keys are
  accepted by verifiers throughout (the target is pending or previous, the
  old current becomes previous), so invariant 2 holds at every step. The
  client write is the commit point: :meth:`VaultStore.versions` reports the
  new states as soon as the client path names the target, so "exactly one
  current, and the client read gives it" (invariant 1) holds at every step.
  An intent left by a crash is always rolled forward.
- retire: index only (the key leaves the verifier view in that write). The
  client path never holds a non-current key, so nothing else changes.
- the rotation record lives in the index (format 2): :meth:`VaultStore.commit`
  saves it in the change's index write (a promotion's, in the intent, saved by
  the completion that clears it: readers see the new states and the record
  together, at the client write); ``save_rotation`` alone is one index write.
- destroy: wipe the value path first, then mark it destroyed in the index,
  so a crash never leaves an index saying "destroyed" over a live value.

The runner holds the lease lock around all of this; the check-and-set writes
make a second writer a conflict rather than an overwrite even without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from ...errors import NotFoundError
from ...model import AcceptedKey, Rotation, Version, VersionState
from ...ports import VersionChange, dispatch
from ...registry import AdapterContext
from ...vault_auth import CasMismatch, check_connection_settings, parse_connection
from .._cas import RECORD_MAX_AGE, confirmed
from ..rules import (
    RESERVED,
    accepted,
    plan_promote,
    plan_publish,
    plan_set_state,
)
from .access import VaultAccess
from .drift import VaultDrift
from .layout import client_value, document_field, mount_and_prefix
from .lock import LeaseLock
from .record import INDEX_FORMAT, Saved, _Index, _Promotion

OWN_WRITE_AGE = 20.0  # seconds :meth:`VaultStore.state` trusts copies under a lease it wrote


class VaultStore(VaultDrift, LeaseLock, VaultAccess):
    FEATURES = frozenset(
        {
            "state",
            "batched-reads",
            "drift",
            "history",
            "access-check",
            "rolling-window",
            "atomic-record",
        }
    )

    """A SecretStore on a Vault/OpenBao KV v2 mount (see the package docstring).

    Thread-safe. Every method raises only rotatectl errors: PermissionDeniedError
    naming the path and missing capability, NotFoundError, ConflictError (a
    check-and-set lost), StoreUnavailableError (sealed, unreachable, 5xx;
    retried here with bounded backoff before it is raised).
    """

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], ctx: AdapterContext) -> Self:
        """Build from a ``[stores.NAME]`` table (see DESIGN.md section 4).

        Keys: url, mount, prefix, namespace, auth, ca_cert, ca_path,
        client_cert, client_key, timeout. Raises ConfigError naming the key.
        No network call happens here: the first store call authenticates.
        """
        from ...extras import MissingExtraError, require

        try:
            require("hvac", "store type 'vault'")  # imported at the first request
        except MissingExtraError as exc:
            raise ctx.error("type", str(exc)) from None
        check_connection_settings(settings, ctx, {"mount": str, "prefix": str})
        mount, prefix = mount_and_prefix(settings, ctx)
        return cls(parse_connection(settings, ctx), mount=mount, prefix=prefix, env=ctx.env)

    def __repr__(self) -> str:
        where = f"{self.mount}/{self.prefix}".rstrip("/")
        return f"VaultStore({self.url!r}, {where!r})"

    # -- SecretStore --------------------------------------------------------------

    def list_paths(self) -> list[str]:
        """Credential paths under the mount (and prefix): those with an index or rotation."""
        where = "vault list"
        found: list[str] = []

        def walk(folder: str) -> None:
            for key in self._list(where, folder):
                if key == f"{RESERVED}/":
                    inner = self._list(where, folder + key)
                    if "index" in inner or "rotation" in inner:
                        found.append(folder.rstrip("/"))
                elif key.endswith("/"):
                    walk(folder + key)

        root = f"{self.prefix}/" if self.prefix else ""
        walk(root)
        return sorted(p[len(root) :] for p in found)

    def versions(self, path: str) -> list[Version]:
        return list(self._effective(f"vault read versions of {path}", path).versions)

    def snapshot_many(
        self, paths: Sequence[str], *, locks: bool = True
    ) -> dict[str, tuple[list[Version], Rotation | None, int, bool]]:
        """Per path: (versions, rotation, revision, locked), for ``status`` and a no-op
        ``run``: KV v2 has no batch read, so two reads a path (the lock, the index with
        the rotation record) instead of a lease taken and given back; one without
        ``locks`` (``locked`` is then False)."""
        found: dict[str, tuple[list[Version], Rotation | None, int, bool]] = {}
        for path in dict.fromkeys(paths):
            locked = False
            if locks:
                # The lock first: a lease then taken on this very copy (its
                # check-and-set) proves nobody wrote the records read after it.
                row, _, _ = self._lock_row(f"vault read lock of {path}", path)
                locked = row is not None and row.holder is not None
            versions, rotation, revision = self._state(path)
            found[path] = (versions, rotation, revision, locked)
        return found

    def state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        """StateReader.state: the index, which holds the rotation record (one read),
        remembered for the step that follows (see :meth:`_recall`).

        No request at all when this store itself wrote the lock less than
        OWN_WRITE_AGE ago (it holds the lease: nobody else writes) and has a copy of
        the index made since, with no promotion pending; or made since it read the
        free lock its lease was then taken on with a check-and-set (no one took the
        lease in between, so no one wrote: a ``run`` whose lock-free pass read the
        lock, then the index, reads neither again).
        """
        lock, index = (self._known.stamped(self._rel(path, leaf)) for leaf in ("lock", "index"))
        since = lock[1] if lock is not None else 0.0  # how old the oldest trusted copy may be
        fence = self._fences.get(path)
        if lock is not None and fence is not None and fence[0] == lock[0][1]:
            since = max(since, time.monotonic() - fence[1])
        if (
            lock is not None
            and lock[0][2]
            and lock[0][0] is not None
            and lock[0][0].get("holder")
            and lock[1] < OWN_WRITE_AGE
            and index is not None
            # A copy from before the lease was taken may predate another holder's work.
            and index[1] <= since
            and index[1] < RECORD_MAX_AGE
        ):
            (index_data, index_kv, _), _ = index
            remembered = _Index.decode(index_data, index_kv, f"vault read state of {path}")
            if remembered.promotion is None and remembered.record_known:
                return _state_of(remembered)
        return self._state(path)

    def _state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        where = f"vault read state of {path}"
        return _state_of(self._effective(where, path, remember=True, record=True))

    def publish(self, path: str, version: Version, value: str) -> None:
        self._publish(path, version, value, None)

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        self._promote(path, version_id, expected_current, at, None)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        self._set_state(path, version_id, state, expected, at, None)

    def commit(
        self, path: str, change: VersionChange, rotation: Rotation, expected_revision: int
    ) -> int:
        """SecretStore.commit: the change's index write carries the rotation record (a
        publish writes its value path first, a promotion its client path between two
        index writes, as without a record). Repeated after it landed, it writes nothing."""
        save = (rotation, expected_revision)
        dispatch(
            change,
            lambda version, value: self._publish(path, version, value, save),
            lambda version_id, expected, at: self._promote(path, version_id, expected, at, save),
            lambda version_id, state, expected, at: self._set_state(
                path, version_id, state, expected, at, save
            ),
        )
        return expected_revision + 1

    def _publish(self, path: str, version: Version, value: str, save: Saved | None) -> None:
        where = f"vault publish {path}"
        rel = self._value_rel(path, version.version_id)

        def plan(ix: _Index) -> _Index | None:
            new = plan_publish(path, ix.versions, version)
            return ix.saving(path, None if new is None else ix.with_versions([new]), save)

        def attempt() -> None:
            index, updated = self._plan(where, path, plan)
            if updated is None:
                return
            cas = 0
            if index.find(version.version_id) is None:
                custom = {
                    "version-id": version.version_id,
                    "number": str(version.number),
                    "key-id": version.key_id[:512],
                }
                # A version id is new to the store: its value path is written as new
                # (check-and-set 0) without asking first. An earlier attempt that was
                # cut short left a value there: written over it, then wiped below.
                try:
                    kv_version = self._write(where, rel, {"value": value}, cas, "value", custom)
                except CasMismatch:
                    meta = self._metadata(where, rel)
                    cas = int(meta.get("current_version") or 0) if meta else 0
                    kv_version = self._write(where, rel, {"value": value}, cas, "value", custom)
                self._wrote_value(rel, kv_version, value)
                pins = {**updated.value_kv, version.version_id: kv_version}
                updated = replace(updated, value_kv=pins)
            self._write_index(where, path, updated)
            if cas:
                # An interrupted earlier attempt left a value nobody references.
                self._wipe(where, rel, keep=updated.value_kv[version.version_id])

        self._optimistic(where, attempt)

    def _promote(
        self,
        path: str,
        version_id: str,
        expected_current: str | None,
        at: datetime,
        save: Saved | None,
    ) -> None:
        where = f"vault promote {path}"

        def plan(ix: _Index) -> _Index | None:
            if not plan_promote(path, ix.versions, version_id, expected_current, at):
                return ix.saving(path, None, save)  # promoted: the record alone, if not saved
            later = None
            if save is not None:
                rotation, expected = save
                ix.check_revision(path, expected)
                later = (rotation, expected + 1)
            return replace(ix, promotion=_Promotion(version_id, expected_current, at, later))

        def attempt() -> None:
            _, updated = self._plan(where, path, plan)
            if updated is None:
                return
            index = self._write_index(where, path, updated)
            if index.promotion is not None:
                self._complete(where, path, index)

        self._optimistic(where, attempt)

    def _set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
        save: Saved | None,
    ) -> None:
        where = f"vault set {state} on {path}"

        def plan(ix: _Index) -> _Index | None:
            new = plan_set_state(path, ix.versions, version_id, state, expected, at)
            return ix.saving(path, None if new is None else ix.with_versions([new]), save)

        def attempt() -> None:
            _, updated = self._plan(where, path, plan)
            if state is VersionState.DESTROYED:
                # Wipe before the index says so: "destroyed" must never cover a live value.
                self._wipe(where, self._value_rel(path, version_id))
            if updated is not None:
                self._write_index(where, path, updated)

        self._optimistic(where, attempt)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        where = f"vault read value of {path}"
        if version_id is None:
            # Exactly what a client reads (a document: its fields, as JSON text). The
            # format never changes, so the index as the caller's step read it says it.
            known, _ = self._recall(where, self._rel(path, "index"), read_only=True)
            field = document_field(_Index.decode(*known, where).versions)
            data, _ = self._read(where, self._full(path))
            current = client_value(data, field)
            if current is None:
                raise NotFoundError(f"{path}: no current version")
            return current
        index = self._effective(where, path)
        found = index.find(version_id)
        if found is None:
            raise NotFoundError(f"{path}: no version {version_id}")
        if found.state is VersionState.DESTROYED:
            raise NotFoundError(f"{path}: the value of version {version_id} was destroyed")
        return self._value(where, path, index, version_id)

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        return accepted(self.versions(path), credential)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        _, rotation, revision = _state_of(
            self._effective(f"vault load rotation of {path}", path, record=True)
        )
        return rotation, revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        """One index write (check-and-set) holding the record; ConflictError (nothing
        written) unless the record is at ``expected_revision``.

        The record is checked against what readers see (:meth:`load_rotation`), and a
        promotion not yet committed is not completed first (its client write may be
        what just failed): it stays recorded, to be completed by the next change, but
        without the record it carried, which this newer one replaces (as if the
        promotion had been made without a record: the engine's steps allow for that)."""
        where = f"vault save rotation of {path}"

        def plan(ix: _Index) -> _Index:
            ix.check_revision(path, expected_revision)
            pending = ix.promotion and replace(ix.promotion, save=None)
            return replace(ix, promotion=pending).with_rotation(rotation, expected_revision)

        def attempt() -> None:
            _, updated = confirmed(
                self._as_read(where, path),
                lambda: self._as_read(where, path, fresh=True)[0],
                plan,
            )
            self._write_index(where, path, updated)

        self._optimistic(where, attempt)
        return expected_revision + 1

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` still in the KV history (the index's,
        and the rotation path's from format 1), oldest first."""
        where = f"vault read rotation history of {path}"
        records = [
            *self._kv_records(where, self._rel(path, "rotation"), lambda data: data),
            *self._kv_records(
                where,
                self._rel(path, "index"),
                lambda data: data.get("rotation") if data.get("format") == INDEX_FORMAT else None,
            ),
        ]
        current, _ = self.load_rotation(path)
        last: dict[str, Rotation] = {}
        for record in records:
            if current is None or record.id != current.id:
                last.pop(record.id, None)  # keep insertion order = order of last revision
                last[record.id] = record
        return list(last.values())

    def _kv_records(
        self, where: str, rel: str, record: Callable[[dict[str, Any]], Any]
    ) -> list[Rotation]:
        """The rotation record ``record`` finds in each readable KV version of ``rel``."""
        meta = self._metadata(where, rel)
        found: list[Rotation] = []
        for number in sorted(int(n) for n in ((meta or {}).get("versions") or {})):
            data, _ = self._read(where, rel, number)
            raw = None if data is None else record(data)
            if raw:
                found.append(Rotation.from_dict(raw))
        return found


def _state_of(index: _Index) -> tuple[list[Version], Rotation | None, int]:
    """StateReader.state's answer from an index whose record is known."""
    rotation = index.rotation
    return list(index.versions), rotation, index.rotation_revision if rotation else 0
