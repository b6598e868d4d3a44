"""Client side of the SDK: always present the credential's current key.

:class:`CurrentKey` reads the current key from a store (``read_value(path)``)
and caches it for ``refresh_interval`` seconds. When the API answers 401 or
403, :meth:`CurrentKey.on_auth_failure` reads the store again at once — the
key was probably rotated (or revoked in an emergency) since the last read —
and returns the key to retry with. :meth:`CurrentKey.call` wraps that
"refresh once, retry once" loop around any send function; the ``requests``
and ``httpx`` adapters (:mod:`.requests_auth`, :mod:`.httpx_auth`) do the
same inside those libraries.

A credential whose secret is a JSON document (config ``format = "json"``,
``field = "api_key"``) stores the whole document in every version; give
``CurrentKey`` the field (``CurrentKey(store, path, field="api_key")``) and it
hands out the key in that field, never the document (see
:mod:`rotatectl.secretformat`).

A refresh that fails keeps the cached key (the store being down is no reason
to stop calling the API) and is retried after ``retry_interval``; so does one
that reads a document without a string in ``field`` (:class:`SecretDocumentError`).
Key values never appear in logs, reprs or exception messages.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from .. import secretformat
from ..errors import StoreError
from ..ports import Clock, SystemClock

logger = logging.getLogger(__name__)

R = TypeVar("R")


class CurrentValueSource(Protocol):
    """What a client needs of a store: the current value of a path."""

    def read_value(self, path: str) -> str: ...


class SecretDocumentError(StoreError, secretformat.DocumentError):
    """The value read for a :class:`CurrentKey` with a ``field`` is not a JSON
    document with a string in that field (not JSON, no such field, not a string;
    or the credential holds a bare key). A :class:`~rotatectl.errors.StoreError`,
    like any other failed read, and a :class:`~rotatectl.secretformat.DocumentError`
    (a ValueError). The message names the path and the problem, never the value."""


def _same(a: str, b: str) -> bool:
    # Bytes, so that any value compares (compare_digest refuses non-ASCII str).
    return hmac.compare_digest(a.encode(), b.encode())


def _seconds(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


class CurrentKey:
    """The current key of ``path`` in ``store``, cached. Thread-safe.

    ``field``: the JSON field that holds the key when the credential's secret is
    a JSON document (its config's ``format = "json"``, ``field = "api_key"``;
    for a configured credential, ``credential.secret_format.field``); the key
    handed out is the string in that field. "" (the default): the stored value
    is the key. A value that is not such a document fails the read with
    :class:`SecretDocumentError`, as a store error would.
    ``refresh_interval``: how long a read key is used before reading again.
    ``retry_interval``: after a failed read, how long before the next try;
    also the least time between two forced reads by :meth:`on_auth_failure`,
    so a server that rejects everything cannot make clients hammer the store.
    """

    def __init__(
        self,
        store: CurrentValueSource,
        path: str,
        *,
        field: str = "",
        refresh_interval: float | timedelta = 30.0,
        retry_interval: float | timedelta = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self.path = path
        self.field = field
        self.refresh_interval = _seconds(refresh_interval)
        self.retry_interval = _seconds(retry_interval)
        if self.refresh_interval <= timedelta(0):
            raise ValueError("refresh_interval must be positive")
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._value: str | None = None
        self._due: datetime | None = None
        self._last_forced: datetime | None = None
        self.reads = 0
        self.failed_reads = 0
        self.changes = 0

    def __repr__(self) -> str:  # never the value
        field = f", field={self.field!r}" if self.field else ""
        return f"CurrentKey(path={self.path!r}{field}, loaded={self._value is not None})"

    def get(self) -> str:
        """The key to present now.

        Reads the store when the cached key is older than ``refresh_interval``
        (one thread reads; the others keep using the cached key meanwhile).
        Raises the store's error (or :class:`SecretDocumentError`) only when no
        key was ever read.
        """
        value, due = self._value, self._due
        if value is not None and due is not None and self._clock.now() < due:
            return value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._read(keep_on_error=False)
                assert self._value is not None
                return self._value
        if self._lock.acquire(blocking=False):
            try:
                if self._due is None or self._clock.now() >= self._due:
                    self._read(keep_on_error=True)
            finally:
                self._lock.release()
        return self._value or value

    def cached(self) -> str | None:
        """The cached key if it is still fresh, else None (never reads the store)."""
        value, due = self._value, self._due
        if value is not None and due is not None and self._clock.now() < due:
            return value
        return None

    def refresh(self) -> str:
        """Read the store now (whatever the cache says) and return the key.

        Raises the store's error (or :class:`SecretDocumentError`) when no key
        was ever read; otherwise a failed read keeps the cached key.
        """
        with self._lock:
            self._read(keep_on_error=self._value is not None)
            assert self._value is not None
            return self._value

    def on_auth_failure(self, rejected: str | None = None) -> str:
        """The API refused ``rejected`` (401/403): return the key to retry with.

        If the cached key already differs from ``rejected`` (another thread
        refreshed meanwhile) it is returned without a read. Otherwise the store
        is read once — unless a forced read happened within ``retry_interval``
        — and the (possibly unchanged) current key is returned. Callers retry
        only when the returned key differs from the one that failed.
        """
        with self._lock:
            current = self._value
            if current is not None and rejected is not None and not _same(current, rejected):
                return current
            now = self._clock.now()
            last = self._last_forced
            if current is not None and last is not None and now - last < self.retry_interval:
                return current
            self._last_forced = now
            self._read(keep_on_error=current is not None)
            assert self._value is not None
            return self._value

    def call(self, send: Callable[[str], R], *, rejected: Callable[[R], bool]) -> R:
        """``send(key)``; if ``rejected(response)``, refresh once and retry once.

        The retry happens only when the refresh produced a different key: the
        same key would be refused the same way.
        """
        key = self.get()
        response = send(key)
        if rejected(response):
            fresh = self.on_auth_failure(key)
            if not _same(fresh, key):
                response = send(fresh)
        return response

    def _read(self, *, keep_on_error: bool) -> None:
        """Read the current key (the value, or its document's ``field``); the caller
        holds ``_lock``."""
        now = self._clock.now()
        self.reads += 1
        try:
            value = self._key(self._store.read_value(self.path))
        except Exception as exc:
            self.failed_reads += 1
            if not keep_on_error:
                raise
            self._due = now + self.retry_interval
            logger.warning(
                "current key of %s: read failed (%s: %s); keeping the cached key",
                self.path,
                type(exc).__name__,
                exc,
            )
            return
        if self._value is not None and not _same(value, self._value):
            self.changes += 1
            logger.info("current key of %s changed", self.path)
        self._value = value
        self._due = now + self.refresh_interval

    def _key(self, value: str) -> str:
        """The key in ``value``: itself, or the string in the document's ``field``."""
        if not self.field:
            return value
        try:
            return secretformat.key_of(value, self.field)
        except secretformat.DocumentError as exc:  # its message never holds the value
            raise SecretDocumentError(
                f"{self.path}: {exc} (field={self.field!r}: a JSON document with the key "
                "in that field was expected)"
            ) from None
