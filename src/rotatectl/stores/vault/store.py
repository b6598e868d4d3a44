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
- destroy: wipe the value path first, then mark it destroyed in the index,
  so a crash never leaves an index saying "destroyed" over a live value.

The runner holds the lease lock around all of this; the check-and-set writes
make a second writer a conflict rather than an overwrite even without it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

from ...errors import ConflictError, NotFoundError
from ...model import AcceptedKey, Rotation, Version, VersionState
from ...registry import AdapterContext
from ...vault_auth import CasMismatch, check_connection_settings, parse_connection
from .._cas import RECORD_MAX_AGE
from ..rules import RESERVED, accepted, plan_promote, plan_publish, plan_set_state
from .access import VaultAccess
from .drift import VaultDrift
from .layout import client_value, document_field, mount_and_prefix
from .lock import LeaseLock
from .record import _Index, _Promotion

OWN_WRITE_AGE = 20.0  # seconds :meth:`VaultStore.state` trusts copies under a lease it wrote


class VaultStore(VaultDrift, LeaseLock, VaultAccess):
    FEATURES = frozenset(
        {"state", "batched-reads", "drift", "history", "access-check", "rolling-window"}
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
        ``run``: KV v2 has no batch read, so three reads a path (index, rotation
        record, lock) instead of a lease taken and given back; two without
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
        """StateReader.state: the index and the rotation record (two reads: KV v2 has no
        batch read), remembered for the step that follows (see :meth:`_recall`).

        No request at all when this store itself wrote the lock less than
        OWN_WRITE_AGE ago (it holds the lease: nobody else writes) and has copies
        of both made since, with no promotion pending; or made since it read the
        free lock its lease was then taken on with a check-and-set (no one took the
        lease in between, so no one wrote: a ``run`` whose lock-free pass read the
        lock, then the records, reads neither again).
        """
        lock, index, rotation = (
            self._known.stamped(self._rel(path, leaf)) for leaf in ("lock", "index", "rotation")
        )
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
            and rotation is not None
            # Copies from before the lease was taken may predate another holder's work.
            and max(index[1], rotation[1]) <= since
            and max(index[1], rotation[1]) < RECORD_MAX_AGE
        ):
            (index_data, index_kv, _), _ = index
            (rotation_data, rotation_kv, _), _ = rotation
            where = f"vault read state of {path}"
            remembered = _Index.decode(index_data, index_kv, where)
            if remembered.promotion is None:
                versions = list(remembered.versions)
                if rotation_data is None:
                    return versions, None, 0
                return versions, Rotation.from_dict(rotation_data), rotation_kv
        return self._state(path)

    def _state(self, path: str) -> tuple[list[Version], Rotation | None, int]:
        where = f"vault read state of {path}"
        data, revision = self._read(where, self._rel(path, "rotation"), remember=True)
        rotation = None if data is None else Rotation.from_dict(data)
        versions = list(self._effective(where, path, remember=True).versions)
        return versions, rotation, revision if rotation is not None else 0

    def publish(self, path: str, version: Version, value: str) -> None:
        where = f"vault publish {path}"
        rel = self._value_rel(path, version.version_id)

        def attempt() -> None:
            index, new = self._plan(
                where, path, lambda ix: plan_publish(path, ix.versions, version)
            )
            if new is None:
                return
            custom = {
                "version-id": version.version_id,
                "number": str(version.number),
                "key-id": version.key_id[:512],
            }
            # A version id is new to the store: its value path is written as new
            # (check-and-set 0) without asking first. An earlier attempt that was cut
            # short left a value there: written over it, then wiped below.
            cas = 0
            try:
                kv_version = self._write(where, rel, {"value": value}, cas, "value", custom)
            except CasMismatch:
                meta = self._metadata(where, rel)
                cas = int(meta.get("current_version") or 0) if meta else 0
                kv_version = self._write(where, rel, {"value": value}, cas, "value", custom)
            updated = index.with_versions([new])
            updated = replace(updated, value_kv={**updated.value_kv, new.version_id: kv_version})
            self._write_index(where, path, updated)
            if cas:
                # An interrupted earlier attempt left a value nobody references.
                self._wipe(where, rel, keep=kv_version)

        self._optimistic(where, attempt)

    def promote(
        self, path: str, version_id: str, expected_current: str | None, at: datetime
    ) -> None:
        where = f"vault promote {path}"

        def attempt() -> None:
            index, changed = self._plan(
                where,
                path,
                lambda ix: plan_promote(path, ix.versions, version_id, expected_current, at),
            )
            if not changed:
                return
            intent = _Promotion(version_id, expected_current, at)
            index = self._write_index(where, path, replace(index, promotion=intent))
            self._complete(where, path, index)

        self._optimistic(where, attempt)

    def set_state(
        self,
        path: str,
        version_id: str,
        state: VersionState,
        expected: VersionState,
        at: datetime,
    ) -> None:
        where = f"vault set {state} on {path}"

        def attempt() -> None:
            index, new = self._plan(
                where,
                path,
                lambda ix: plan_set_state(path, ix.versions, version_id, state, expected, at),
            )
            if state is VersionState.DESTROYED:
                # Wipe before the index says so: "destroyed" must never cover a live value.
                self._wipe(where, self._value_rel(path, version_id))
            if new is not None:
                self._write_index(where, path, index.with_versions([new]))

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
        data, revision = self._read(f"vault load rotation of {path}", self._rel(path, "rotation"))
        if data is None:
            return None, 0
        return Rotation.from_dict(data), revision

    def save_rotation(self, path: str, rotation: Rotation, expected_revision: int) -> int:
        where = f"vault save rotation of {path}"
        try:
            return self._write(
                where,
                self._rel(path, "rotation"),
                rotation.to_dict(),
                expected_revision,
                "rotation",
            )
        except CasMismatch as exc:
            raise ConflictError(
                f"{path}: the rotation record is no longer at revision {expected_revision}"
            ) from exc

    def rotation_history(self, path: str) -> list[Rotation]:
        """Earlier rotation records of ``path`` still in the KV history, oldest first."""
        where = f"vault read rotation history of {path}"
        rel = self._rel(path, "rotation")
        meta = self._metadata(where, rel)
        if meta is None:
            return []
        latest = int(meta.get("current_version") or 0)
        records: list[Rotation] = []
        for number in sorted(int(n) for n in (meta.get("versions") or {})):
            data, _ = self._read(where, rel, number)
            if data is not None:
                records.append(Rotation.from_dict(data))
        current = records[-1].id if records and latest else None
        last: dict[str, Rotation] = {}
        for record in records:
            if record.id != current:
                last.pop(record.id, None)  # keep insertion order = order of last revision
                last[record.id] = record
        return list(last.values())
