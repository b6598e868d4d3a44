"""rotatectl's record of a credential: the index document, and how the store reads,
writes and settles it.

The index (``P/.rotatectl/index``, see :mod:`.layout`) holds every version's
metadata, under ``accepted`` the verifier view, and the rotation record with its
revision, so that a version change and the record are one check-and-set write (the
store's "atomic-record" feature); a ``promotion`` intent marks a promotion under way
(see :mod:`.store`, "Write ordering") and carries the record its completion saves.
:class:`_Index` is that document decoded; :class:`Records` reads and writes it, and
the client path, and finishes an interrupted promotion before any change.

Format 1 (every rotatectl before format 2) kept the record at
``P/.rotatectl/rotation``, its KV version the revision. Such an index is still read,
its record from there, and the first write makes it format 2 (the record and its
revision carried over).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from ...errors import NotFoundError, RotatectlError, StoreError
from ...model import Rotation, Version, VersionState, iso, parse_iso
from .._cas import confirmed
from ..rules import check_revision, landed, plan_promote
from .kv import VaultKv
from .layout import client_custom, client_data, client_version_id, document_field

T = TypeVar("T")
log = logging.getLogger(__package__)  # the package's logger: rotatectl.stores.vault

INDEX_FORMAT = 2
LEGACY_FORMAT = 1  # the record at P/.rotatectl/rotation: read, and moved in at the next write

# (a rotation record, its revision): what a write saves, or a completion will.
Saved = tuple[Rotation, int]


@dataclass(frozen=True)
class _Promotion:
    target: str
    expected: str | None
    at: datetime
    save: Saved | None = None  # the record (and revision) saved when the promotion is done


@dataclass(frozen=True)
class _Index:
    """The decoded index path. ``revision`` is its KV version (0: none yet);
    ``rotation_revision`` the rotation record's (0: none saved). ``stored_format``: the
    document's; ``record_known`` is False for a format 1 index until its record was
    read from the rotation path (:meth:`Records._with_record`)."""

    revision: int = 0
    versions: tuple[Version, ...] = ()
    value_kv: Mapping[str, int] = field(default_factory=dict)
    promotion: _Promotion | None = None
    rotation: Rotation | None = None
    rotation_revision: int = 0
    stored_format: int = INDEX_FORMAT
    record_known: bool = True

    @classmethod
    def decode(cls, data: Mapping[str, Any] | None, revision: int, where: str) -> _Index:
        if data is None:
            return cls()
        stored = data.get("format")
        if stored not in (INDEX_FORMAT, LEGACY_FORMAT):
            raise StoreError(f"{where}: index format {stored!r} is not supported")
        rows = list(data.get("versions") or ())
        versions = sorted((Version.from_dict(r) for r in rows), key=lambda v: v.number)
        value_kv = {
            str(r["version_id"]): int(r["value_kv_version"])
            for r in rows
            if r.get("value_kv_version")
        }
        raw = data.get("promotion")
        promotion = None
        if raw:
            at = parse_iso(raw["at"])
            assert at is not None
            save = _saved(raw.get("rotation"), raw.get("rotation_revision"))
            promotion = _Promotion(str(raw["target"]), raw.get("expected"), at, save)
        if stored == LEGACY_FORMAT:
            return cls(revision, tuple(versions), value_kv, promotion, None, 0, stored, False)
        saved = _saved(data.get("rotation"), data.get("rotation_revision"))
        rotation, rotation_revision = saved if saved is not None else (None, 0)
        return cls(revision, tuple(versions), value_kv, promotion, rotation, rotation_revision)

    def encode(self) -> dict[str, Any]:
        rows = []
        for v in self.versions:
            row = v.to_dict()
            if v.version_id in self.value_kv:
                row["value_kv_version"] = self.value_kv[v.version_id]
            rows.append(row)
        view = {
            v.key_id: {
                "version_id": v.version_id,
                "number": v.number,
                "fingerprint": v.fingerprint,
                "state": v.state.value,
                "scopes": list(v.scopes),
                "expires": iso(v.expires),
            }
            for v in self.versions
            if v.state.accepted
        }
        promotion = None
        if self.promotion is not None:
            p = self.promotion
            promotion = {"target": p.target, "expected": p.expected, "at": iso(p.at)}
            if p.save is not None:
                promotion.update(_encode_saved(p.save))
        return {
            "format": INDEX_FORMAT,
            "accepted": view,
            "versions": rows,
            "promotion": promotion,
            **_encode_saved((self.rotation, self.rotation_revision)),
        }

    def find(self, version_id: str | None) -> Version | None:
        return next((v for v in self.versions if v.version_id == version_id), None)

    def with_versions(self, changed: Sequence[Version]) -> _Index:
        by_id = {v.version_id: v for v in self.versions}
        by_id.update({v.version_id: v for v in changed})
        value_kv = {
            k: n
            for k, n in self.value_kv.items()
            if by_id.get(k) is None or by_id[k].state is not VersionState.DESTROYED
        }
        ordered = tuple(sorted(by_id.values(), key=lambda v: v.number))
        return replace(self, versions=ordered, value_kv=value_kv)

    def applied(self, path: str) -> _Index:
        """The index once the recorded promotion is done (intent cleared, the record it
        carries saved)."""
        p = self.promotion
        if p is None:
            return self
        try:
            changes = plan_promote(path, self.versions, p.target, p.expected, p.at)
        except RotatectlError as exc:
            raise StoreError(f"{path}: the recorded promotion cannot be completed: {exc}") from exc
        done = replace(self.with_versions(changes), promotion=None)
        if p.save is not None:
            done = replace(done, rotation=p.save[0], rotation_revision=p.save[1])
        return done

    def saving(self, path: str, new: _Index | None, save: Saved | None) -> _Index | None:
        """``new`` (a change decided on this index; None: no change) with ``save``'s
        record written in the same document at the next revision (SecretStore.commit).
        None when there is nothing to write: no change and no record, or this very
        commit landed already (its reply was lost). ConflictError (the rules') when
        the record is not at the expected revision."""
        if save is None:
            return new
        rotation, expected = save
        if new is None and landed(self.rotation, self.rotation_revision, rotation, expected):
            return None
        self.check_revision(path, expected)
        return (new or self).with_rotation(rotation, expected)

    def check_revision(self, path: str, expected: int) -> None:
        """ConflictError (the rules') unless the record is at revision ``expected``."""
        check_revision(path, self.rotation_revision, expected)

    def with_rotation(self, rotation: Rotation, expected: int) -> _Index:
        """This index with ``rotation`` saved at the revision after ``expected``."""
        return replace(self, rotation=rotation, rotation_revision=expected + 1)


def _saved(data: Any, revision: Any) -> Saved | None:
    if not data:
        return None
    return Rotation.from_dict(data), int(revision)


def _encode_saved(saved: tuple[Rotation | None, int]) -> dict[str, Any]:
    rotation, revision = saved
    return {
        "rotation": None if rotation is None else rotation.to_dict(),
        "rotation_revision": revision,
    }


class Records(VaultKv):
    """Reading and writing the index and the client path (see :mod:`.kv`)."""

    def _read_index(self, where: str, path: str, *, remember: bool = False) -> _Index:
        data, revision = self._read(where, self._rel(path, "index"), remember=remember)
        return _Index.decode(data, revision, where)

    def _with_record(self, where: str, path: str, index: _Index) -> _Index:
        """``index`` with its rotation record: a format 1 index's is read from the
        rotation path (its KV version the revision, as format 1 kept it)."""
        if index.record_known:
            return index
        data, kv = self._read(where, self._rel(path, "rotation"))
        rotation = None if data is None else Rotation.from_dict(data)
        return replace(
            index, rotation=rotation, rotation_revision=kv if rotation else 0, record_known=True
        )

    def _write_index(self, where: str, path: str, index: _Index) -> _Index:
        """Write ``index`` (check-and-set on its KV version) as format 2; a format 1
        index first gets its record and the longer KV history format 2 keeps."""
        rel = self._rel(path, "index")
        if index.stored_format != INDEX_FORMAT:
            index = self._with_record(where, path, index)
            self._configure(where, rel, "index")  # max_versions for the records' history
        revision = self._write(where, rel, index.encode(), index.revision, "index")
        return replace(index, revision=revision, stored_format=INDEX_FORMAT)

    def _client_version_id(self, where: str, path: str, index: _Index) -> tuple[str | None, int]:
        """The version the client path holds (see :func:`.layout.client_version_id`)
        and the client path's KV version."""
        data, version = self._read_client(where, path, index.versions)
        return client_version_id(data, index.versions), version

    def _read_client(
        self, where: str, path: str, versions: Sequence[Version]
    ) -> tuple[dict[str, Any] | None, int]:
        """The client path's (data, KV version), and what version it names remembered
        (see ``_serving``) when that does not depend on ``versions``: a bare key names
        its version beside it; a document is matched by fingerprint, and a version
        added later (an adoption's) may match it."""
        rel = self._full(path)
        data, kv = self._read(where, rel)
        if versions and not document_field(versions):
            self._serving.put(rel, (client_version_id(data, versions), kv))
        return data, kv

    def _value(self, where: str, path: str, index: _Index, version_id: str) -> str:
        kv_version = index.value_kv.get(version_id)
        if kv_version is None:
            raise NotFoundError(f"{where}: the value of version {version_id} was destroyed")
        rel = self._value_rel(path, version_id)
        written = self._written_value(rel, kv_version)
        if written is not None:
            return written  # what this store wrote there: the pin names that very KV version
        data, _ = self._read(where, rel, kv_version)
        if data is None or not isinstance(data.get("value"), str):
            raise NotFoundError(f"{where}: the value of version {version_id} is gone")
        value: str = data["value"]
        return value

    def _complete(self, where: str, path: str, index: _Index) -> _Index:
        """Roll a recorded promotion forward: the client path, then the index."""
        p = index.promotion
        assert p is not None
        rel = self._full(path)
        # The client path as this store last saw it, if that names another version:
        # the check-and-set write below fails if it changed since (and the retry reads
        # it). That it names the target already is confirmed on a fresh read.
        known = self._serving.get(rel)
        if known is not None and known[0] != p.target:
            serving, client_version = known
        else:
            serving, client_version = self._client_version_id(where, path, index)
        if serving != p.target:
            target = index.find(p.target)
            if target is None:
                raise StoreError(f"{where}: the recorded promotion names no known version")
            written = self._write(
                where,
                rel,
                client_data(target, self._value(where, path, index, p.target)),
                client_version,
                "client",
                client_custom(target.field),
            )
            if not target.field:
                self._serving.put(rel, (p.target, written))
        return self._write_index(where, path, index.applied(path))

    def _settled(self, where: str, path: str, *, fresh: bool = False) -> tuple[_Index, bool]:
        """The index with any promotion left by an earlier call completed, and
        whether it is the remembered copy (see :meth:`_recall`); ``fresh``: read it."""
        index, remembered = self._recent(where, path, fresh=fresh)
        if index.promotion is not None:
            log.info("%s: completing an interrupted promotion", where)
            index = self._complete(where, path, index)
        return index, remembered

    def _recent(self, where: str, path: str, *, fresh: bool = False) -> tuple[_Index, bool]:
        """The index as stored, with its record: the remembered copy (see
        :meth:`_recall`) unless ``fresh``; and whether it was that copy."""
        rel = self._rel(path, "index")
        if fresh:
            found, remembered = self._read(where, rel, remember=True), False
        else:
            found, remembered = self._recall(where, rel, remember=True)
        return self._with_record(where, path, _Index.decode(*found, where)), remembered

    def _plan(self, where: str, path: str, plan: Callable[[_Index], T]) -> tuple[_Index, T]:
        """``plan`` on the settled index; when that is the remembered copy and the plan
        is a no-op (falsy) or refuses (raises), again on a fresh read."""
        return confirmed(
            self._settled(where, path),
            lambda: self._settled(where, path, fresh=True)[0],
            plan,
        )

    def _effective(
        self, where: str, path: str, *, remember: bool = False, record: bool = False
    ) -> _Index:
        """The index as readers see it: a promotion counts once the client path has it
        (with the record it saves). ``record``: with the rotation record of a format 1
        index too (one more read)."""
        index = self._read_index(where, path, remember=remember)
        if record:
            index = self._with_record(where, path, index)
        return self._committed(where, path, index)

    def _committed(self, where: str, path: str, index: _Index) -> _Index:
        """``index`` with its promotion applied if the client path has it already: the
        client path is the commit point of a promotion (:mod:`.store`, write ordering)."""
        if index.promotion is not None:
            serving, _ = self._client_version_id(where, path, index)
            if serving == index.promotion.target:
                index = index.applied(path)
        return index

    def _as_read(self, where: str, path: str, *, fresh: bool = False) -> tuple[_Index, bool]:
        """The index as readers see it (:meth:`_effective`, with its record), from the
        remembered copy unless ``fresh``; and whether it was that copy. Unlike
        :meth:`_settled` it writes nothing: a promotion not yet committed stays."""
        index, remembered = self._recent(where, path, fresh=fresh)
        return self._committed(where, path, index), remembered
