"""Drift: changes made outside rotatectl (e.g. with ``bao kv put``).

The index's version rows are rotatectl's record. The generic check compares
the client path's ``current`` with the current version's fingerprint;
:meth:`VaultStore.drift` checks everything else (see there). A foreign client
value is adopted as a new version by :func:`rotatectl.drift.adopt`, like on every
store; :meth:`VaultStore.adopt` then takes what verifiers see as the truth (a key
dropped from the verifier view is retired). ``restore`` writes the records back
over the client path, the view and the value paths. Both repair rotatectl's own
copies of values from the KV history where they can; the caller holds the lease.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ... import secretformat
from ...errors import ConflictError, PermissionDeniedError
from ...model import Version, VersionState, parse_iso
from .._cas import RECORD_MAX_AGE, RecordCache
from ..rules import plan_set_state
from .layout import (
    CLIENT_FIELD,
    client_custom,
    client_data,
    client_value,
    client_version_id,
    document_field,
    kept_versions,
)
from .record import Records, _Index

# Fields of a verifier view entry that ``adopt`` may take from an outside edit:
# they restrict a key (or not) without naming another one.
_ADOPTABLE_VIEW_FIELDS = frozenset({"scopes", "expires"})


@dataclass(frozen=True)
class _ViewDiff:
    """How the stored verifier view differs from the one the index's rows give."""

    malformed: bool = False
    missing: tuple[Version, ...] = ()  # accepted versions the view no longer lists
    changed: tuple[tuple[Version, tuple[str, ...]], ...] = ()  # (version, differing fields)
    extra: int = 0  # entries no accepted version has
    stored: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.malformed or bool(self.missing or self.changed or self.extra)

    @classmethod
    def of(cls, index: _Index, stored: Any) -> _ViewDiff:
        expected: dict[str, dict[str, Any]] = index.encode()["accepted"]
        if not isinstance(stored, dict):
            return cls(malformed=True)
        by_key = {v.key_id: v for v in index.versions if v.state.accepted}
        changed = []
        for key, want in expected.items():
            got = stored.get(key)
            if got is None or got == want:
                continue
            fields = (
                tuple(sorted(f for f in set(want) | set(got) if want.get(f) != got.get(f)))
                if isinstance(got, dict)
                else ("entry",)
            )
            changed.append((by_key[key], fields))
        return cls(
            missing=tuple(by_key[k] for k in expected if k not in stored),
            changed=tuple(changed),
            extra=sum(1 for k in stored if k not in expected),
            stored=stored,
        )


@dataclass(frozen=True)
class _Scan:
    """One look at a credential's paths, for drift: what differs from the index's records."""

    index: _Index  # as stored (revision 0: missing or deleted)
    versions: tuple[Version, ...]  # as readers see them: a committed promotion applied
    client: Mapping[str, Any] | None
    client_kv: int
    index_gone: str = ""  # "deleted" | "missing" | "" (there)
    index_undeletable: bool = False  # its latest KV version is soft-deleted, not destroyed
    client_matches: bool = True  # the client value matches the current fingerprint
    labels_wrong: bool = False  # the client's key_id/version_id do not name the current
    view: _ViewDiff = field(default_factory=_ViewDiff)
    values: tuple[tuple[Version, str], ...] = ()  # (accepted version, "missing" | "mismatch")
    settings: tuple[tuple[str, str, str], ...] = ()  # (rel, kind, what is wrong)
    field: str = ""  # the document field that holds the key ("": a bare key)

    @property
    def current(self) -> Version | None:
        return next((v for v in self.versions if v.state is VersionState.CURRENT), None)

    @property
    def client_value(self) -> str | None:
        return client_value(self.client, self.field)


@dataclass(frozen=True)
class _Seen:
    """What :meth:`VaultDrift.drift_many` already has for one credential's drift check,
    read moments before in this status or run: the client path's (data, KV version) as
    ``current_values_many`` read it, and the metadata of every path under the
    credentials' common folder (one scan). None: read it now."""

    client: tuple[dict[str, Any] | None, int] | None = None
    meta: Mapping[str, Mapping[str, Any]] | None = None


def _unproven(meta: Mapping[str, Any] | None, version: Version, pin: int) -> str:
    """Why a value path's metadata does not prove that its latest KV version is the one
    rotatectl wrote for ``version`` (``pin``, as the index records it): "missing" or
    "mismatch"; "" when it proves it. A KV version's data never changes once written
    (it can only be deleted or destroyed), so the latest being that live version,
    under the custom metadata rotatectl gave the path (gone if the path's metadata was
    deleted and written again), means the value path holds what rotatectl wrote."""
    if meta is None:
        return "missing"
    latest = int(meta.get("current_version") or 0)
    state = (meta.get("versions") or {}).get(str(latest)) or {}
    if not latest or state.get("deletion_time") or state.get("destroyed"):
        return "missing"
    custom = meta.get("custom_metadata") or {}
    if latest != pin or custom.get("version-id") != version.version_id:
        return "mismatch"
    return ""


class VaultDrift(Records):
    """The DriftAware methods of :class:`VaultStore`: changes made outside rotatectl."""

    def drift(self, path: str) -> list[str]:
        """Differences of the layout from the index's records, one line each; [] if none.

        The generic check (:mod:`rotatectl.drift`) compares what a client reads
        (the ``current`` field of the client path) with the current version's
        fingerprint; this covers the rest: the client path gone or naming another
        version, the index deleted, the verifier view disagreeing with the version
        states, an accepted version's value path gone or holding another value,
        and check-and-set or ``max_versions`` changed on the client path or index.
        Never names a value. A status read racing a rotation is looked at again.
        """
        where = f"vault drift check of {path}"
        problems: list[str] = []
        for _ in range(3):
            scan = self._scan(where, path)
            problems = self._describe(path, scan)
            if not problems:
                return []
            _, revision = self._read(where, self._rel(path, "index"))
            _, client_kv = self._read(where, self._full(path))
            if (revision, client_kv) == (scan.index.revision, scan.client_kv):
                break  # nothing moved while we looked: the problems are real
        return problems

    def client_value(self, path: str) -> str | None:
        """What a client reading the client path gets, as a version stores it (see
        :func:`.layout.client_value`). A KV secret rotatectl did not create (no version
        recorded) is taken as a JSON document of all its fields: a KV secret is a map,
        and adopting it must keep every field (the config must declare its format)."""
        where = f"vault read client value of {path}"
        versions = self._effective(where, path).versions
        data, _ = self._read(where, self._full(path))
        if versions:
            value = client_value(data, document_field(versions))
        else:
            value = None if data is None else json.dumps(data, ensure_ascii=False)
        if value is not None:
            secretformat.register(value)
        return value

    def current_values_many(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Each path's current value (what :meth:`read_value` gives, None for none): one
        read of the client path each, handed on to the :meth:`drift_many` that follows
        (``rotatectl.drift.detect_many`` calls the two in turn), which then does not
        read it again."""
        seen: RecordCache[str, tuple[dict[str, Any] | None, int]] = RecordCache(RECORD_MAX_AGE)
        values: dict[str, str | None] = {}
        for path in dict.fromkeys(paths):
            where = f"vault read value of {path}"
            # As read_value does: the format never changes, so the step's index says it.
            known, _ = self._recall(where, self._rel(path, "index"), read_only=True)
            versions = _Index.decode(*known, where).versions
            field = document_field(versions)
            data, kv = self._read_client(where, path, versions)
            seen.put(path, (data, kv))
            values[path] = client_value(data, field)
        self._clients_seen = seen
        return values

    def drift_many(self, paths: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`drift` of many paths, without its reads a credential beyond the index
        (the caller's snapshot) and the client path (``current_values_many``'s read,
        when it came just before): on OpenBao, one ``SCAN`` of the paths' common folder
        gives every client path's and index's settings and each value path's KV
        versions. A credential whose check finds anything on these is checked again by
        :meth:`drift`, on fresh reads (each value path's data too), and reported as it
        says; so a clean answer here is one :meth:`drift` would give.
        """
        paths = list(dict.fromkeys(paths))
        # Taken once: a later call reads the client path again.
        clients, self._clients_seen = self._clients_seen, RecordCache(RECORD_MAX_AGE)
        meta = None
        if len(paths) > 1:  # one credential: its own reads cost no more than a scan
            meta = self._scan_shared("vault drift check", self._common_folder(paths))
        found: dict[str, list[str]] = {}
        for path in paths:
            where = f"vault drift check of {path}"
            scan = self._scan(where, path, _Seen(clients.get(path), meta))
            found[path] = self.drift(path) if self._describe(path, scan) else []
        clients.clear()
        return found

    def _common_folder(self, paths: Sequence[str]) -> str:
        """The deepest folder (rel) that holds every path's client path and records."""
        common: list[str] | None = None
        for path in paths:
            parent = self._full(path).split("/")[:-1]
            if common is None:
                common = parent
                continue
            n = 0
            while n < min(len(common), len(parent)) and common[n] == parent[n]:
                n += 1
            common = common[:n]
        return "/".join(common or [])

    def adopt(self, path: str, at: datetime) -> None:
        """After the client path's key is adopted (:func:`rotatectl.drift.adopt` made it
        a new current version), take the rest of what verifiers see as the truth:

        - The verifier view no longer lists a pending or previous version: that
          version is retired. Changed ``scopes``/``expires`` are taken over.
        - rotatectl's own copies are repaired where the store still has the
          value (the value path's history, or the client path); an accepted
          version whose value is gone for good is recorded as lost: it stays
          accepted (verifiers need only its hash) but cannot be rolled back to.
        - check-and-set and ``max_versions`` are set again on the client path
          and the index; the client path's metadata fields are rewritten.

        ConflictError (nothing written) when the store's state cannot be
        recorded: the index or the client path's key is gone, the client path
        still holds a key that is not the current version's, the view drops the
        current key, or it lists keys rotatectl has no version for.
        """
        where = f"vault adopt {path}"
        self._optimistic(where, lambda: self._adopt(where, path, at))

    def restore(self, path: str, at: datetime, value: str | None = None) -> None:
        """Put the index's records back: undelete a deleted index, rewrite value
        paths from their KV history (or the client path), rebuild the verifier
        view from the version states, set check-and-set and ``max_versions``
        again, and rewrite the client path from the current version's value.

        ConflictError (before any write but an undelete) when a value is gone
        from the store for good, or the index cannot be brought back.
        """
        where = f"vault restore {path}"
        self._optimistic(where, lambda: self._restore(where, path))

    def _scan(self, where: str, path: str, seen: _Seen | None = None) -> _Scan:
        """One look at ``path``'s layout; ``seen``: what was read for it already (a value
        path then counts as changed unless its metadata proves it is not: see
        :func:`_unproven`; :meth:`drift_many` confirms anything found on fresh reads)."""
        seen = seen or _Seen()
        index_rel = self._rel(path, "index")
        # As the caller's step has just read it; never a copy of our own write: drift
        # is what others changed since.
        (data, revision), _ = self._recall(where, index_rel, read_only=True)
        index = _Index.decode(data, revision, where)
        client, client_kv = seen.client or self._read_client(where, path, index.versions)

        def metadata(rel: str) -> Mapping[str, Any] | None:
            if seen.meta is not None:
                return seen.meta.get(rel)
            return self._metadata_if_allowed(where, rel)

        field = document_field(index.versions)
        held = client_value(client, field)
        if held is not None:
            secretformat.register(held)
        if data is None:
            gone, undeletable = "", False
            meta = metadata(index_rel)
            if meta is not None and int(meta.get("current_version") or 0):
                gone = "deleted"
                latest = (meta.get("versions") or {}).get(str(meta["current_version"])) or {}
                undeletable = bool(latest.get("deletion_time")) and not latest.get("destroyed")
            elif client is not None:
                gone = "missing"
            return _Scan(index, (), client, client_kv, gone, undeletable, field=field)
        versions = index.versions
        if (
            index.promotion is not None
            and client_version_id(client, index.versions) == index.promotion.target
        ):
            versions = index.applied(path).versions  # committed: the client path has it
        current = next((v for v in versions if v.state is VersionState.CURRENT), None)
        scan = _Scan(
            index,
            versions,
            client,
            client_kv,
            view=_ViewDiff.of(index, data.get("accepted")),
            field=field,
        )
        client_matches, labels_wrong = True, False
        if current is not None and scan.client_value is not None:
            client_matches = secretformat.matches(current, scan.client_value)
            assert client is not None
            # A document carries nothing of rotatectl's: its key field is all there is.
            labels_wrong = not field and (client.get("version_id"), client.get("key_id")) != (
                current.version_id,
                current.key_id,
            )
        values = []
        for v in versions:
            if not v.state.accepted or v.version_id not in index.value_kv:
                continue  # no pin: never published here, or its loss was adopted
            if seen.meta is not None:
                rel = self._value_rel(path, v.version_id)
                problem = _unproven(seen.meta.get(rel), v, index.value_kv[v.version_id])
                if problem:
                    values.append((v, problem))
                continue
            found, _ = self._read(where, self._value_rel(path, v.version_id))
            value = None if found is None else found.get("value")
            if not isinstance(value, str):
                values.append((v, "missing"))
                continue
            secretformat.register(value)
            if not secretformat.matches(v, value):
                values.append((v, "mismatch"))
        settings = []
        for rel, kind in ((self._full(path), "client"), (index_rel, "index")):
            meta = metadata(rel)
            if meta is None:
                continue
            if not meta.get("cas_required"):
                settings.append((rel, kind, "does not require check-and-set"))
            kept = int(meta.get("max_versions") or 0)
            want = kept_versions(kind, index.stored_format)
            if kept != want:
                settings.append((rel, kind, f"keeps {kept or 'unlimited'} versions, not {want}"))
        return replace(
            scan,
            client_matches=client_matches,
            labels_wrong=labels_wrong,
            values=tuple(values),
            settings=tuple(settings),
        )

    def _describe(self, path: str, scan: _Scan) -> list[str]:
        index_path, client_path = self.index_path(path), self.client_path(path)
        if scan.index_gone == "deleted":
            return [f"the index {index_path} was deleted outside rotatectl"]
        if scan.index_gone == "missing":
            return [f"the client path {client_path} holds a key but the index {index_path} is gone"]
        lines = []
        current = scan.current
        if current is not None:
            if scan.client is None:
                lines.append(f"the client path {client_path} is missing")
            elif scan.client_value is None:
                lines.append(
                    f"the client path {client_path} has no '{scan.field or CLIENT_FIELD}' field"
                )
            elif scan.labels_wrong:
                lines.append(
                    f"the client path's key_id/version_id do not name v{current.number} "
                    f"({current.key_id}), the current version"
                )
        for v, problem in scan.values:
            where = f"{self.mount}/{self._value_rel(path, v.version_id)}"
            what = "is missing" if problem == "missing" else "holds another value"
            lines.append(f"v{v.number} ({v.key_id}, {v.state}): its value path {where} {what}")
        view = scan.view
        if view.malformed:
            lines.append(f"the verifier view ('accepted') in {index_path} is malformed")
        for v in view.missing:
            lines.append(f"the verifier view no longer lists v{v.number} ({v.key_id}, {v.state})")
        for v, fields in view.changed:
            lines.append(
                f"the verifier view's entry for v{v.number} ({v.key_id}) has another "
                + ", ".join(fields)
            )
        if view.extra:
            lines.append(f"the verifier view lists {view.extra} key(s) rotatectl does not accept")
        for rel, _, problem in scan.settings:
            lines.append(f"{self.mount}/{rel} {problem}")
        return lines

    def _adopt(self, where: str, path: str, at: datetime) -> None:
        scan = self._scan(where, path)
        if scan.index_gone:
            raise ConflictError(
                f"{path}: the index is {scan.index_gone}; adopting that would forget every "
                "version (--restore brings a deleted index back)"
            )
        if scan.index.promotion is not None:
            self._settled(where, path)
            scan = self._scan(where, path)
        index, current = scan.index, scan.current
        client_value = scan.client_value
        if current is not None and client_value is None:
            raise ConflictError(
                f"{path}: the client path has no key, so there is nothing to adopt; "
                f"--restore rewrites it from v{current.number}"
            )
        if current is not None and not scan.client_matches:
            raise ConflictError(
                f"{path}: the client path holds a key that is not v{current.number}'s; "
                "adopt it first (`check --adopt` does), or --restore"
            )
        # The verifier view: what verifiers accept is the truth.
        view = scan.view
        if view.malformed or view.extra:
            raise ConflictError(
                f"{path}: the verifier view names keys rotatectl has no version of; "
                "it cannot be adopted (--restore rebuilds it)"
            )
        rows: dict[str, Version] = {}
        for v in view.missing:
            if v.state is VersionState.CURRENT:
                raise ConflictError(
                    f"{path}: the verifier view dropped v{v.number}, the current key, which "
                    "verifiers must accept; --restore, or replace it with `rotatectl emergency`"
                )
            retired = plan_set_state(
                path, index.versions, v.version_id, VersionState.RETIRED, v.state, at
            )
            if retired is not None:
                rows[v.version_id] = retired
        for v, fields in view.changed:
            if not set(fields) <= _ADOPTABLE_VIEW_FIELDS:
                raise ConflictError(
                    f"{path}: the verifier view's entry for v{v.number} has another "
                    f"{', '.join(sorted(set(fields) - _ADOPTABLE_VIEW_FIELDS))}; it cannot be "
                    "adopted (--restore rebuilds it)"
                )
            rows[v.version_id] = self._view_fields(where, v, view.stored[v.key_id])
        # rotatectl's copies of the values: repaired where the store still has them.
        pins: dict[str, str] = {}
        lost: list[str] = []
        for v, _ in scan.values:
            value = self._value_source(where, path, v, client_value)
            if value is None:
                lost.append(v.version_id)
            else:
                pins[v.version_id] = value
        # Write: settings, value copies, the index, then the client path.
        self._fix_settings(where, scan)
        kv = {vid: self._rewrite_value(where, path, index.find(vid), v) for vid, v in pins.items()}
        if rows or kv or lost or view:
            updated = index.with_versions(list(rows.values()))
            value_kv = {k: n for k, n in {**updated.value_kv, **kv}.items() if k not in lost}
            index = self._write_index(where, path, replace(updated, value_kv=value_kv))
        if current is not None and scan.labels_wrong:
            assert client_value is not None
            self._write_client(where, path, current, client_value)

    def _view_fields(self, where: str, version: Version, entry: Mapping[str, Any]) -> Version:
        """``version`` with the scopes and expiry an outside edit gave its view entry."""
        scopes = entry.get("scopes")
        expires = entry.get("expires")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ConflictError(f"{where}: the view entry for v{version.number} has bad scopes")
        try:
            when = parse_iso(expires) if expires is not None else None
        except (TypeError, ValueError) as exc:
            raise ConflictError(
                f"{where}: the view entry for v{version.number} has a bad expiry"
            ) from exc
        return replace(version, scopes=tuple(scopes), expires=when)

    def _restore(self, where: str, path: str) -> None:
        scan = self._scan(where, path)
        if scan.index_gone:
            rel = self._rel(path, "index")
            if not scan.index_undeletable:
                raise ConflictError(
                    f"{path}: the index {self.index_path(path)} is gone and its history "
                    "holds no copy to restore; nothing to restore from"
                )
            self._undelete_latest(where, rel)
            scan = self._scan(where, path)
            if scan.index_gone:  # pragma: no cover - the undelete did not take
                raise ConflictError(f"{path}: the index could not be undeleted")
        if scan.index.promotion is not None:
            self._settled(where, path)
            scan = self._scan(where, path)
        index, current = scan.index, scan.current
        # Plan first: every value must have a source before anything is written.
        pins: dict[str, str] = {}
        for v, _ in scan.values:
            value = self._value_source(where, path, v, scan.client_value, undelete=True)
            if value is None:
                raise ConflictError(
                    f"{path}: the value of v{v.number} ({v.key_id}) is gone from the store "
                    "and its history; nothing to restore it from (--adopt records it as lost)"
                )
            pins[v.version_id] = value
        client_value: str | None = None
        rewrite_client = current is not None and (
            scan.client_value is None or not scan.client_matches or scan.labels_wrong
        )
        if rewrite_client:
            assert current is not None
            client_value = pins.get(current.version_id) or self._value_source(
                where, path, current, None, undelete=True
            )
            if client_value is None:
                raise ConflictError(
                    f"{path}: the value of v{current.number}, the current version, is gone "
                    "from the store; nothing to restore the client path from"
                )
        self._fix_settings(where, scan)
        kv = {vid: self._rewrite_value(where, path, index.find(vid), v) for vid, v in pins.items()}
        if kv or scan.view:
            self._write_index(where, path, replace(index, value_kv={**index.value_kv, **kv}))
        if rewrite_client:
            assert current is not None and client_value is not None
            self._write_client(where, path, current, client_value)

    def _value_source(
        self,
        where: str,
        path: str,
        version: Version,
        client_value: str | None,
        *,
        undelete: bool = False,
    ) -> str | None:
        """A value for ``version`` that matches its fingerprint, still in the store:
        the newest readable KV version of its value path, else the client path's
        value, else (``undelete``) its soft-deleted latest KV version; None if none."""
        rel = self._value_rel(path, version.version_id)

        def matching(data: Mapping[str, Any] | None) -> str | None:
            value = None if data is None else data.get("value")
            if not isinstance(value, str):
                return None
            secretformat.register(value)
            return value if secretformat.matches(version, value) else None

        meta = self._metadata(where, rel)
        history = (meta or {}).get("versions") or {}
        for number in sorted((int(n) for n in history), reverse=True):
            state = history[str(number)]
            if state.get("deletion_time") or state.get("destroyed"):
                continue
            found = matching(self._read(where, rel, number)[0])
            if found is not None:
                return found
        if client_value is not None and matching({"value": client_value}) is not None:
            return client_value
        if undelete and meta is not None and self._undelete_latest(where, rel):
            return matching(self._read(where, rel)[0])
        return None

    def _undelete_latest(self, where: str, rel: str) -> bool:
        """Undo a soft delete of the latest KV version of ``rel``; False if there is none."""
        meta = self._metadata(where, rel)
        if meta is None:
            return False
        latest = int(meta.get("current_version") or 0)
        state = (meta.get("versions") or {}).get(str(latest)) or {}
        if not latest or not state.get("deletion_time") or state.get("destroyed"):
            return False
        self._call(
            where,
            self._api("undelete", rel),
            "update",
            lambda c: c.secrets.kv.v2.undelete_secret_versions(
                rel, [latest], mount_point=self.mount
            ),
        )
        return True

    def _rewrite_value(self, where: str, path: str, version: Version | None, value: str) -> int:
        """Write ``value`` as the latest KV version of the version's value path (cas)."""
        assert version is not None
        rel = self._value_rel(path, version.version_id)
        custom = {
            "version-id": version.version_id,
            "number": str(version.number),
            "key-id": version.key_id[:512],
        }
        return self._write(
            where, rel, {"value": value}, self._kv_version(where, rel), "value", custom
        )

    def _write_client(self, where: str, path: str, current: Version, value: str) -> None:
        rel = self._full(path)
        self._write(
            where,
            rel,
            client_data(current, value),
            self._kv_version(where, rel),
            "client",
            client_custom(current.field),
        )

    def _fix_settings(self, where: str, scan: _Scan) -> None:
        """Set check-and-set and max_versions again where an outside change dropped them."""
        for rel, kind in dict.fromkeys((rel, kind) for rel, kind, _ in scan.settings):
            custom = client_custom(scan.field) if kind == "client" else None
            kept = kept_versions(kind, scan.index.stored_format)
            self._configure(where, rel, kind, custom, versions=kept)

    def _kv_version(self, where: str, rel: str) -> int:
        """The latest KV version of ``rel`` (deleted or not): the cas for the next write."""
        meta = self._metadata(where, rel)
        return int(meta.get("current_version") or 0) if meta else 0

    def _metadata_if_allowed(self, where: str, rel: str) -> dict[str, Any] | None:
        """Metadata for a drift check; None when the token may not read it (check skipped)."""
        try:
            return self._metadata(where, rel)
        except PermissionDeniedError:
            return None
