"""The lease lock: ``P/.rotatectl/lock``, ``{"holder", "token", "acquired", "expires"}``.

The KV version an acquisition writes is its fencing token: larger than any
token before it, whatever renewals happened in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ...errors import RotatectlError, StoreError
from ...model import Lease, iso, parse_iso
from ..rules import LockRow, plan_acquire, plan_release, plan_renew
from .kv import VaultKv

log = logging.getLogger(__package__)  # the package's logger: rotatectl.stores.vault


class LeaseLock(VaultKv):
    """The lease lock methods of :class:`VaultStore`."""

    def _lock_row(
        self, where: str, path: str, *, fresh: bool = True
    ) -> tuple[LockRow | None, int, bool]:
        """The lock row, its KV version, and whether that is the remembered copy
        (``fresh`` False allows one; see :meth:`_recall`)."""
        rel = self._rel(path, "lock")
        if fresh:
            (data, version), remembered = self._read(where, rel, remember=True), False
        else:
            (data, version), remembered = self._recall(where, rel, remember=True)
        return (*self._decode_lock(data, version), remembered)

    @staticmethod
    def _decode_lock(data: Mapping[str, Any] | None, version: int) -> tuple[LockRow | None, int]:
        if data is None:
            return None, version
        return (
            LockRow(
                data.get("holder"),
                int(data["token"]),
                parse_iso(data.get("acquired")),
                parse_iso(data.get("expires")),
            ),
            version,
        )

    def _put_lock(self, where: str, path: str, holder: str | None, lease: Lease, cas: int) -> int:
        data = {
            "holder": holder,
            "token": lease.token,
            "acquired": iso(lease.acquired) if holder else None,
            "expires": iso(lease.expires) if holder else None,
        }
        return self._write(where, self._rel(path, "lock"), data, cas, "lock")

    def acquire_lock(
        self,
        path: str,
        holder: str,
        ttl: timedelta,
        now: datetime,
        steal_token: int | None = None,
    ) -> Lease:
        where = f"vault lock {path}"

        def attempt() -> Lease:
            rel = self._rel(path, "lock")
            copy = self._known.stamped(rel)
            row, version, remembered = self._lock_row(where, path, fresh=False)
            try:
                lease = plan_acquire(path, row, holder, ttl, now, steal_token)
            except RotatectlError:
                if not remembered:
                    raise
                row, version, remembered = self._lock_row(where, path)  # held, says a copy
                lease = plan_acquire(path, row, holder, ttl, now, steal_token)
            # A free lock read at ``read_at``: once this write's check-and-set on it
            # succeeds, nobody took the lease since, so nobody wrote the records
            # either (state() trusts copies read after it).
            read_at = None
            if remembered and copy is not None and (row is None or row.holder is None):
                read_at = time.monotonic() - copy[1]
            # The fencing token is the KV version this very write creates: larger
            # than any token before it, whatever renewals happened in between.
            lease = replace(lease, token=version + 1)
            written = self._put_lock(where, path, holder, lease, version)
            if written != lease.token:
                raise StoreError(f"{where}: expected lock version {lease.token}, got {written}")
            self._fences.pop(path, None)
            if read_at is not None:
                self._fences[path] = (written, read_at)
            if row is not None and row.holder is not None:
                why = (
                    "expired"
                    if row.expires is not None and row.expires <= now
                    else "given up by its dead holder"
                )
                log.warning(
                    "%s: took over the lease of %s (token %s, %s at %s); new token %s",
                    where,
                    row.holder,
                    row.token,
                    why,
                    iso(row.expires),
                    lease.token,
                )
            return lease

        return self._optimistic(where, attempt)

    def renew_lock(self, lease: Lease, ttl: timedelta, now: datetime) -> Lease:
        """Extend the lease; also renews the vault token if it would not outlive ``ttl``."""
        path = lease.credential
        where = f"vault renew lock of {path}"
        self.renew_if_needed(ttl)

        def attempt() -> Lease:
            row, version, remembered = self._lock_row(where, path, fresh=False)
            try:
                renewed = plan_renew(row, lease, ttl, now)
            except RotatectlError:
                if not remembered:
                    raise
                row, version, _ = self._lock_row(where, path)  # lost, says a copy: ask
                renewed = plan_renew(row, lease, ttl, now)
            self._put_lock(where, path, renewed.holder, renewed, version)
            return renewed

        return self._optimistic(where, attempt)

    def release_lock(self, lease: Lease) -> None:
        path = lease.credential
        where = f"vault release lock of {path}"

        def attempt() -> None:
            row, version, remembered = self._lock_row(where, path, fresh=False)
            if not plan_release(row, lease) and remembered:
                row, version, _ = self._lock_row(where, path)  # not ours, says a copy: ask
            if plan_release(row, lease):
                self._put_lock(where, path, None, lease, version)

        self._optimistic(where, attempt)
