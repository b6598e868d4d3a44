"""rotatectl's record of a credential: the index document, and how the store reads,
writes and settles it.

The index (``P/.rotatectl/index``, see :mod:`.layout`) holds every version's
metadata and, under ``accepted``, the verifier view; a ``promotion`` intent marks a
promotion under way (see :mod:`.store`, "Write ordering"). :class:`_Index` is that
document decoded; :class:`Records` reads and writes it, and the client path, and
finishes an interrupted promotion before any change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from ...errors import NotFoundError, RotatectlError, StoreError
from ...model import Version, VersionState, iso, parse_iso
from .._cas import confirmed
from ..rules import plan_promote
from .kv import VaultKv
from .layout import client_custom, client_data, client_version_id

T = TypeVar("T")
log = logging.getLogger(__package__)  # the package's logger: rotatectl.stores.vault

INDEX_FORMAT = 1


@dataclass(frozen=True)
class _Promotion:
    target: str
    expected: str | None
    at: datetime


@dataclass(frozen=True)
class _Index:
    """The decoded index path. ``revision`` is its KV version (0: none yet)."""

    revision: int = 0
    versions: tuple[Version, ...] = ()
    value_kv: Mapping[str, int] = field(default_factory=dict)
    promotion: _Promotion | None = None

    @classmethod
    def decode(cls, data: Mapping[str, Any] | None, revision: int, where: str) -> _Index:
        if data is None:
            return cls()
        if data.get("format") != INDEX_FORMAT:
            raise StoreError(f"{where}: index format {data.get('format')!r} is not supported")
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
            promotion = _Promotion(str(raw["target"]), raw.get("expected"), at)
        return cls(revision, tuple(versions), value_kv, promotion)

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
        return {"format": INDEX_FORMAT, "accepted": view, "versions": rows, "promotion": promotion}

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
        """The index once the recorded promotion is done (intent cleared)."""
        p = self.promotion
        if p is None:
            return self
        try:
            changes = plan_promote(path, self.versions, p.target, p.expected, p.at)
        except RotatectlError as exc:
            raise StoreError(f"{path}: the recorded promotion cannot be completed: {exc}") from exc
        return replace(self.with_versions(changes), promotion=None)


class Records(VaultKv):
    """Reading and writing the index and the client path (see :mod:`.kv`)."""

    def _read_index(self, where: str, path: str, *, remember: bool = False) -> _Index:
        data, revision = self._read(where, self._rel(path, "index"), remember=remember)
        return _Index.decode(data, revision, where)

    def _write_index(self, where: str, path: str, index: _Index) -> _Index:
        revision = self._write(
            where, self._rel(path, "index"), index.encode(), index.revision, "index"
        )
        return replace(index, revision=revision)

    def _client_version_id(self, where: str, path: str, index: _Index) -> tuple[str | None, int]:
        """The version the client path holds (see :func:`.layout.client_version_id`)
        and the client path's KV version."""
        data, version = self._read(where, self._full(path))
        return client_version_id(data, index.versions), version

    def _value(self, where: str, path: str, index: _Index, version_id: str) -> str:
        kv_version = index.value_kv.get(version_id)
        if kv_version is None:
            raise NotFoundError(f"{where}: the value of version {version_id} was destroyed")
        data, _ = self._read(where, self._value_rel(path, version_id), kv_version)
        if data is None or not isinstance(data.get("value"), str):
            raise NotFoundError(f"{where}: the value of version {version_id} is gone")
        value: str = data["value"]
        return value

    def _complete(self, where: str, path: str, index: _Index) -> _Index:
        """Roll a recorded promotion forward: the client path, then the index."""
        p = index.promotion
        assert p is not None
        serving, client_version = self._client_version_id(where, path, index)
        if serving != p.target:
            target = index.find(p.target)
            if target is None:
                raise StoreError(f"{where}: the recorded promotion names no known version")
            self._write(
                where,
                self._full(path),
                client_data(target, self._value(where, path, index, p.target)),
                client_version,
                "client",
                client_custom(target.field),
            )
        return self._write_index(where, path, index.applied(path))

    def _settled(self, where: str, path: str, *, fresh: bool = False) -> tuple[_Index, bool]:
        """The index with any promotion left by an earlier call completed, and
        whether it is the remembered copy (see :meth:`_recall`); ``fresh``: read it."""
        rel = self._rel(path, "index")
        if fresh:
            found, remembered = self._read(where, rel, remember=True), False
        else:
            found, remembered = self._recall(where, rel, remember=True)
        index = _Index.decode(*found, where)
        if index.promotion is not None:
            log.info("%s: completing an interrupted promotion", where)
            index = self._complete(where, path, index)
        return index, remembered

    def _plan(self, where: str, path: str, plan: Callable[[_Index], T]) -> tuple[_Index, T]:
        """``plan`` on the settled index; when that is the remembered copy and the plan
        is a no-op (falsy) or refuses (raises), again on a fresh read."""
        return confirmed(
            self._settled(where, path),
            lambda: self._settled(where, path, fresh=True)[0],
            plan,
        )

    def _effective(self, where: str, path: str, *, remember: bool = False) -> _Index:
        """The index as readers see it: a promotion counts once the client path has it."""
        index = self._read_index(where, path, remember=remember)
        if index.promotion is not None:
            # The client path is the commit point of a promotion (:mod:`.store`, write ordering).
            serving, _ = self._client_version_id(where, path, index)
            if serving == index.promotion.target:
                index = index.applied(path)
        return index
