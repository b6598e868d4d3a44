"""Server side of the SDK: accept every valid key of one or more credentials.

A :class:`KeyRing` loads the *accepted* keys (pending, current, previous) of
its credentials with :meth:`SecretStore.accepted_keys` — key ids and SHA-256
fingerprints only, never values — and answers :meth:`KeyRing.verify` with a
:class:`Verification` or a :class:`Rejection`.

How a presented key is checked, in this order:

1. Its shape and CRC checksum (:func:`rotatectl.keyformat.parse`): a
   malformed or mistyped key is rejected here, before any hashing.
2. Its public key id is looked up in a dict: O(1) in the number of keys.
3. SHA-256 of its secret part is compared with the stored fingerprint with
   :func:`hmac.compare_digest`.
4. Expiry and, when asked for, scope.

Fast path: once a key has passed all of this, the ring remembers a 64-bit
process-keyed tag of it (Python's SipHash ``hash()`` of the key's bytes) ->
its entry. When the same key is presented again the tag finds the entry at
once; because the tag matches only that exact string (short of a SipHash
collision, 2**-64 with a per-process random key), the checksum need not be
recomputed. SHA-256 and the constant-time compare still decide every time,
and anything that misses the tag takes the full path above. The tag is not
the key and cannot give it back.

Refresh: a daemon thread reloads the keys every ``refresh_interval`` seconds.
A well-formed key whose key id is unknown triggers one immediate reload (so a
brand-new pending key is accepted at once), at most once per
``unknown_refresh_interval`` so that made-up keys cannot hammer the store.

Fail-static: a reload that fails keeps the last good keys of that credential
and records the failure; after ``max_staleness`` it logs a warning. It never
turns a store outage into rejecting every request.

Retired keys: the verifier view lists only accepted keys, so the ring keeps
the key ids (and fingerprints) of keys that were accepted in an earlier load
and have since disappeared; such a key is rejected as ``retired`` rather than
``unknown-key``. A key that was retired before the ring started is
``unknown-key``.

Thread-safety: the key tables are an immutable snapshot swapped in by one
assignment; ``verify`` takes no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from hashlib import sha256
from hmac import compare_digest
from types import TracebackType
from typing import Any, ClassVar, Literal, Protocol, Self, TypeAlias

from ..keyformat import CHECKSUM_LENGTH, SECRET_LENGTH, KeyFormatError, parse
from ..model import AcceptedKey, VersionState, iso
from ..ports import Clock, SystemClock
from .usage_log import UsageLog

logger = logging.getLogger(__name__)

RejectReason = Literal[
    "missing",  # no key in the request (middleware only)
    "malformed",
    "bad-checksum",
    "unknown-key",
    "retired",
    "expired",
    "wrong-scope",
]


class AcceptedKeySource(Protocol):
    """The verifier-only view of a store: every SecretStore provides it."""

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]: ...


@dataclass(frozen=True, slots=True)
class Verification:
    """A key was accepted. Truthy. Holds no secret."""

    credential: str
    version_id: str
    key_id: str
    state: VersionState
    scopes: tuple[str, ...] = ()
    expires: datetime | None = None
    ok: ClassVar[bool] = True

    def __bool__(self) -> Literal[True]:
        return True

    def has_scope(self, scope: str) -> bool:
        """True if the key grants ``scope``. A key without scopes grants none."""
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class Rejection:
    """A key was refused, and why. Falsy.

    ``key_id`` is set when the key was well-formed; ``credential`` only when
    the key itself was recognised (retired, expired, wrong-scope).
    """

    reason: RejectReason
    key_id: str | None = None
    credential: str | None = None
    ok: ClassVar[bool] = False

    def __bool__(self) -> Literal[False]:
        return False

    @property
    def http_status(self) -> int:
        """403 for a valid key that lacks the scope, else 401."""
        return 403 if self.reason == "wrong-scope" else 401


Result: TypeAlias = Verification | Rejection

MISSING = Rejection("missing")
_MALFORMED = Rejection("malformed")
_BAD_CHECKSUM = Rejection("bad-checksum")
# Everything after the secret part: the checksum. Keys are split from the end
# because the prefix may itself contain underscores.
_SECRET_SLICE = slice(-(SECRET_LENGTH + CHECKSUM_LENGTH), -CHECKSUM_LENGTH)


def require_scope(result: Result, scope: str) -> Result:
    """``result`` if it is a Verification granting ``scope``; else a Rejection.

    A Rejection passes through unchanged; a Verification without the scope
    becomes ``Rejection("wrong-scope")``.
    """
    if isinstance(result, Verification) and scope not in result.scopes:
        return Rejection("wrong-scope", result.key_id, result.credential)
    return result


class _Entry:
    """One accepted key as the ring holds it: a digest, never a value."""

    __slots__ = (
        "credential",
        "digest",
        "expires",
        "key_id",
        "plain",
        "scope_set",
        "source",
        "verification",
    )

    def __init__(self, key: AcceptedKey, digest: bytes) -> None:
        self.source = key
        self.credential = key.credential
        self.key_id = key.key_id
        self.digest = digest
        self.expires = key.expires
        self.scope_set = frozenset(key.scopes)
        # Built once, returned by every successful verify: no allocation per request.
        self.verification = Verification(
            key.credential, key.version_id, key.key_id, key.state, tuple(key.scopes), key.expires
        )
        self.plain = key.expires is None


@dataclass(frozen=True, slots=True)
class _Retired:
    credential: str
    version_id: str
    key_id: str
    digest: bytes
    noticed: datetime


class _Snapshot:
    """The tables ``verify`` reads. Replaced whole on each load, never edited
    (except ``memo``, which only ever gains tags of keys verified against it)."""

    __slots__ = ("by_credential", "keys", "memo", "memo_get", "retired")

    def __init__(
        self,
        by_credential: dict[str, tuple[_Entry, ...]],
        retired: dict[str, _Retired],
        memo: dict[int, _Entry],
    ) -> None:
        self.by_credential = by_credential
        keys: dict[str, tuple[_Entry, ...]] = {}
        for entries in by_credential.values():
            for e in entries:
                # Key ids are random; two credentials sharing one is astronomically
                # rare, but then both must still verify, so each id maps to a tuple.
                keys[e.key_id] = (*keys.get(e.key_id, ()), e)
        self.keys = keys
        self.retired = retired
        self.memo = memo
        self.memo_get = memo.get


@dataclass
class _Credential:
    name: str
    path: str
    last_ok: datetime | None = None
    last_attempt: datetime | None = None
    error: str | None = None
    failures: int = 0  # consecutive


@dataclass(frozen=True)
class CredentialStatus:
    """What the ring knows of one credential."""

    name: str
    path: str
    keys: tuple[tuple[str, str, VersionState], ...]  # (key id, version id, state)
    last_ok: datetime | None
    error: str | None  # the last load's error, None when it succeeded
    failures: int  # consecutive failed loads

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "keys": [{"key_id": k, "version_id": v, "state": s.value} for k, v, s in self.keys],
            "last_ok": iso(self.last_ok),
            "error": self.error,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class KeyRingStatus:
    """Health of a :class:`KeyRing`: how old its keys are and what failed.

    ``staleness`` is the age of the oldest credential's last good load;
    ``stale`` is True once it exceeds ``max_staleness``; ``degraded`` is True
    while any credential's last load failed (its last good keys are in use).
    """

    now: datetime
    staleness: timedelta
    max_staleness: timedelta
    stale: bool
    degraded: bool
    credentials: tuple[CredentialStatus, ...]
    retired: tuple[tuple[str, str, datetime], ...]  # (key id, credential, noticed)
    refreshes: int
    failed_refreshes: int
    on_demand_refreshes: int
    usage_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; key ids and states only, never a fingerprint."""
        return {
            "now": iso(self.now),
            "staleness_seconds": round(self.staleness.total_seconds(), 3),
            "max_staleness_seconds": self.max_staleness.total_seconds(),
            "stale": self.stale,
            "degraded": self.degraded,
            "credentials": [c.to_dict() for c in self.credentials],
            "retired": [
                {"key_id": k, "credential": c, "noticed": iso(t)} for k, c, t in self.retired
            ],
            "refreshes": self.refreshes,
            "failed_refreshes": self.failed_refreshes,
            "on_demand_refreshes": self.on_demand_refreshes,
            "usage_dropped": self.usage_dropped,
        }


def _credentials(
    credentials: str | Mapping[str, str] | Iterable[str | tuple[str, str]],
) -> list[_Credential]:
    items: Iterable[str | tuple[str, str]]
    if isinstance(credentials, str):
        items = [credentials]
    elif isinstance(credentials, Mapping):
        items = list(credentials.items())
    else:
        items = credentials
    found: list[_Credential] = []
    for item in items:
        name, path = (item, item) if isinstance(item, str) else item
        if not name or not path:
            raise ValueError("a credential needs a non-empty name and path")
        if any(c.name == name for c in found):
            raise ValueError(f"credential {name!r} is listed twice")
        found.append(_Credential(name, path))
    if not found:
        raise ValueError("a KeyRing needs at least one credential")
    return found


def _seconds(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


class KeyRing:
    """Verifies presented keys against the accepted keys of ``credentials``.

    ``credentials`` is a credential name (its path in the store is the name),
    a list of names and ``(name, path)`` pairs, or a ``{name: path}`` mapping.
    Intervals are seconds or timedeltas.
    ``store`` needs only ``accepted_keys`` (the verifier view); the ring never
    reads a key value. ``usage_log`` is a file path (the ring owns and closes
    that writer) or a :class:`UsageLog`. ``clock`` decides expiry and
    staleness. With ``start`` the background refresh thread starts at once.

    Raises the store's error if a credential cannot be loaded at
    construction (there is no last good set to fall back on yet), and
    ValueError for bad arguments.
    """

    def __init__(
        self,
        store: AcceptedKeySource,
        credentials: str | Mapping[str, str] | Iterable[str | tuple[str, str]],
        *,
        refresh_interval: float | timedelta = 30.0,
        max_staleness: float | timedelta = 300.0,
        unknown_refresh_interval: float | timedelta | None = None,
        usage_log: str | os.PathLike[str] | UsageLog | None = None,
        clock: Clock | None = None,
        start: bool = True,
        retired_memory: int = 4096,
    ) -> None:
        self._store = store
        self._credentials = _credentials(credentials)
        self.refresh_interval = _seconds(refresh_interval)
        self.max_staleness = _seconds(max_staleness)
        self.unknown_refresh_interval = _seconds(
            self.refresh_interval if unknown_refresh_interval is None else unknown_refresh_interval
        )
        if self.refresh_interval <= timedelta(0):
            raise ValueError("refresh_interval must be positive")
        if self.max_staleness < timedelta(0) or self.unknown_refresh_interval < timedelta(0):
            raise ValueError("max_staleness and unknown_refresh_interval must not be negative")
        self._clock: Clock = clock or SystemClock()
        self._retired_memory = retired_memory
        self._retired: OrderedDict[str, _Retired] = OrderedDict()
        self._refresh_lock = threading.Lock()
        self._last_on_demand: datetime | None = None
        self._warned_stale = False
        self.refreshes = 0
        self.failed_refreshes = 0
        self.on_demand_refreshes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owns_usage = usage_log is not None and not isinstance(usage_log, UsageLog)
        self._usage: UsageLog | None = (
            usage_log
            if isinstance(usage_log, UsageLog) or usage_log is None
            else UsageLog(usage_log)
        )
        self._state = _Snapshot({}, {}, {})
        try:
            with self._refresh_lock:
                self._load(initial=True)
        except BaseException:
            if self._owns_usage and self._usage is not None:
                self._usage.close()
            raise
        if start:
            self.start()

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self._credentials)
        return f"KeyRing([{names}], keys={sum(map(len, self._state.keys.values()))})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the background refresh thread (idempotent)."""
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, name="rotatectl-keyring", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop refreshing and flush the usage log. The store is the caller's to close."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._usage is not None:
            if self._owns_usage:
                self._usage.close()
            else:
                self._usage.flush()

    def _run(self) -> None:
        interval = self.refresh_interval.total_seconds()
        clock = time.monotonic
        next_at = clock() + interval
        while not self._stop.wait(max(0.0, next_at - clock())):
            # Fixed rate: the keys are never older than one interval plus one load.
            next_at = max(next_at + interval, clock())
            try:
                self.refresh()
            except Exception:  # the thread must outlive any bug in a store adapter
                logger.exception("key ring: refresh failed unexpectedly")

    # -- loading ---------------------------------------------------------------

    def refresh(self) -> bool:
        """Reload every credential now. True when all loaded.

        A credential that fails keeps its last good keys (fail-static); the
        failure is recorded in :meth:`status` and logged.
        """
        with self._refresh_lock:
            return self._load(initial=False)

    def _load(self, *, initial: bool) -> bool:
        now = self._clock.now()
        loaded: dict[str, list[AcceptedKey]] = {}
        for cred in self._credentials:
            cred.last_attempt = now
            try:
                loaded[cred.name] = self._store.accepted_keys(cred.path, cred.name)
            except Exception as exc:
                if initial:
                    raise
                # Fail-static: whatever went wrong, the last good keys stay in force.
                cred.failures += 1
                cred.error = f"{type(exc).__name__}: {exc}"
                if cred.failures == 1:
                    logger.warning(
                        "key ring: cannot load %s (%s); keeping its last good keys",
                        cred.name,
                        cred.error,
                    )
                continue
            if cred.failures:
                logger.warning(
                    "key ring: %s loaded again after %d failed attempts", cred.name, cred.failures
                )
            cred.last_ok, cred.error, cred.failures = now, None, 0
        if loaded:
            # Stamped after the reads: the moment the ring starts refusing retired keys.
            self._install(loaded, self._clock.now())
        ok = len(loaded) == len(self._credentials)
        self.refreshes += 1
        if not ok:
            self.failed_refreshes += 1
        self._check_staleness(now)
        return ok

    def _install(self, loaded: dict[str, list[AcceptedKey]], now: datetime) -> None:
        old = self._state
        reuse = {e.source: e for entries in old.by_credential.values() for e in entries}
        by_credential = dict(old.by_credential)
        for name, keys in loaded.items():
            entries: list[_Entry] = []
            for key in keys:
                entry = reuse.get(key)
                if entry is None:
                    try:
                        entry = _Entry(key, bytes.fromhex(key.fingerprint))
                    except ValueError:
                        logger.warning(
                            "key ring: %s version %s has no SHA-256 fingerprint; skipped",
                            name,
                            key.version_id,
                        )
                        continue
                entries.append(entry)
            new_ids = {e.key_id for e in entries}
            for gone in old.by_credential.get(name, ()):
                if gone.key_id not in new_ids:
                    self._retired[gone.key_id] = _Retired(
                        name, gone.verification.version_id, gone.key_id, gone.digest, now
                    )
                    self._retired.move_to_end(gone.key_id)
            for key_id in new_ids:
                # A retired key that is accepted again (a rollback reinstated it).
                self._retired.pop(key_id, None)
            by_credential[name] = tuple(entries)
        while len(self._retired) > self._retired_memory:
            self._retired.popitem(last=False)
        fresh = _Snapshot(by_credential, dict(self._retired), {})
        # A copy: request threads may add tags to the old memo meanwhile.
        for tag, entry in old.memo.copy().items():
            for candidate in fresh.keys.get(entry.key_id, ()):
                if candidate.credential == entry.credential and candidate.digest == entry.digest:
                    fresh.memo[tag] = candidate
        self._state = fresh

    def _check_staleness(self, now: datetime) -> None:
        age = self._staleness(now)
        if age > self.max_staleness and not self._warned_stale:
            self._warned_stale = True
            failing = ", ".join(f"{c.name} ({c.error})" for c in self._credentials if c.error)
            logger.warning(
                "key ring: keys are %.0fs old (max_staleness %.0fs): the store is unreachable "
                "for %s; still accepting the last good keys",
                age.total_seconds(),
                self.max_staleness.total_seconds(),
                failing or "some credentials",
            )
        elif age <= self.max_staleness and self._warned_stale:
            self._warned_stale = False
            logger.warning("key ring: caught up; keys are current again")

    def _staleness(self, now: datetime) -> timedelta:
        oldest = min((c.last_ok for c in self._credentials if c.last_ok), default=None)
        return timedelta(0) if oldest is None else max(timedelta(0), now - oldest)

    def _refresh_unknown(self, seen: _Snapshot) -> _Snapshot | None:
        """Reload for an unknown key id; the new snapshot, or None if not allowed now."""
        with self._refresh_lock:
            current = self._state
            if current is not seen:
                return current  # someone reloaded while this request waited: look again
            now = self._clock.now()
            last = self._last_on_demand
            if last is not None and now - last < self.unknown_refresh_interval:
                return None
            self._last_on_demand = now
            self.on_demand_refreshes += 1
            self._load(initial=False)
            return self._state

    def _may_refresh_unknown(self) -> bool:
        last = self._last_on_demand
        return last is None or self._clock.now() - last >= self.unknown_refresh_interval

    # -- verifying -------------------------------------------------------------

    def verify(
        self, presented: str, *, scope: str | None = None, client: str | None = None
    ) -> Result:
        """Check ``presented`` (the whole key); ``scope``: also require that scope.

        Returns a :class:`Verification` (truthy) or a :class:`Rejection`
        (falsy) with a reason; never raises for any input. ``client`` (e.g.
        the remote address) goes into the usage record. May read the store
        once for an unknown key id (see the module docstring); use
        :meth:`averify` on an event loop.
        """
        state = self._state
        try:
            raw = presented.encode()
        except (AttributeError, UnicodeError):
            return _MALFORMED
        entry = state.memo_get(hash(raw))
        if entry is not None and compare_digest(sha256(raw[_SECRET_SLICE]).digest(), entry.digest):
            if entry.plain and scope is None and self._usage is None:
                return entry.verification
            return self._accept(entry, scope, client)
        result = self._check(state, presented, scope, client, refresh=True)
        assert result is not None  # only None when refresh=False
        return result

    async def averify(
        self, presented: str, *, scope: str | None = None, client: str | None = None
    ) -> Result:
        """:meth:`verify` for event loops: a store read runs in a worker thread."""
        result = self._check(self._state, presented, scope, client, refresh=False)
        if result is None:
            result = await _off_loop(
                partial(self._check, self._state, presented, scope, client, refresh=True)
            )
            assert result is not None
        return result

    def _check(
        self,
        state: _Snapshot,
        presented: str,
        scope: str | None,
        client: str | None,
        *,
        refresh: bool,
    ) -> Result | None:
        """The full path. None only when ``refresh`` is False and a reload is due."""
        try:
            parsed = parse(presented)  # shape and checksum: no hashing
        except KeyFormatError as exc:
            return _MALFORMED if exc.reason == "malformed" else _BAD_CHECKSUM
        key_id = parsed.key_id
        secret = parsed.secret.encode()
        digest: bytes | None = None
        for attempt in (1, 2):
            entries = state.keys.get(key_id)
            if entries:
                digest = digest or sha256(secret).digest()
                for entry in entries:
                    if compare_digest(digest, entry.digest):
                        # Tags of verified keys only: bounded by the number of keys.
                        state.memo[hash(presented.encode())] = entry
                        return self._accept(entry, scope, client)
                # A made-up secret for a real key id: not logged, or anyone could
                # keep an old key looking "in use" to the usage gate.
                return Rejection("unknown-key", key_id)
            retired = state.retired.get(key_id)
            if retired is not None:
                digest = digest or sha256(secret).digest()
                if compare_digest(digest, retired.digest):
                    return self._reject("retired", key_id, retired.credential, client)
                return Rejection("unknown-key", key_id)
            if attempt == 2:
                break
            if not refresh:
                if self._may_refresh_unknown():
                    return None
                break
            newer = self._refresh_unknown(state)
            if newer is None:
                break
            state = newer
        return self._reject("unknown-key", key_id, None, client)

    def _accept(self, entry: _Entry, scope: str | None, client: str | None) -> Result:
        if entry.expires is not None and self._clock.now() >= entry.expires:
            return self._reject("expired", entry.key_id, entry.credential, client)
        if scope is not None and scope not in entry.scope_set:
            return self._reject("wrong-scope", entry.key_id, entry.credential, client)
        if self._usage is not None:
            self._usage.record(entry.credential, entry.key_id, "ok", client)
        return entry.verification

    def _reject(
        self, reason: RejectReason, key_id: str, credential: str | None, client: str | None
    ) -> Rejection:
        if self._usage is not None:
            # Rejected attempts still mean some client holds the key (the probe counts them).
            self._usage.record(credential, key_id, "rejected", client)
        return Rejection(reason, key_id, credential)

    # -- reporting -----------------------------------------------------------------

    @property
    def usage_log(self) -> UsageLog | None:
        return self._usage

    @property
    def staleness(self) -> timedelta:
        """Age of the oldest credential's last good load."""
        return self._staleness(self._clock.now())

    @property
    def stale(self) -> bool:
        """True once :attr:`staleness` exceeds ``max_staleness``."""
        return self.staleness > self.max_staleness

    def status(self) -> KeyRingStatus:
        """A consistent picture of the ring's health and keys (no fingerprints)."""
        with self._refresh_lock:
            now = self._clock.now()
            state = self._state
            creds = tuple(
                CredentialStatus(
                    c.name,
                    c.path,
                    tuple(
                        (e.key_id, e.verification.version_id, e.verification.state)
                        for e in state.by_credential.get(c.name, ())
                    ),
                    c.last_ok,
                    c.error,
                    c.failures,
                )
                for c in self._credentials
            )
            staleness = self._staleness(now)
            return KeyRingStatus(
                now=now,
                staleness=staleness,
                max_staleness=self.max_staleness,
                stale=staleness > self.max_staleness,
                degraded=any(c.error for c in self._credentials),
                credentials=creds,
                retired=tuple((r.key_id, r.credential, r.noticed) for r in state.retired.values()),
                refreshes=self.refreshes,
                failed_refreshes=self.failed_refreshes,
                on_demand_refreshes=self.on_demand_refreshes,
                usage_dropped=self._usage.dropped if self._usage is not None else 0,
            )


async def _off_loop(fn: Callable[[], Result | None]) -> Result | None:
    """Run ``fn`` in a worker thread on asyncio; inline on other loops (e.g. trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    return await asyncio.to_thread(fn)


# -- HTTP helpers shared by the middlewares ------------------------------------


@dataclass(frozen=True)
class KeyHeaders:
    """Where a request carries its key.

    ``Authorization: <scheme> <key>`` when ``scheme`` is set (default
    ``Bearer``; None to ignore the header), else the plain ``header``
    (default ``X-Api-Key``; None to ignore it). Authorization wins when both
    are present.
    """

    scheme: str | None = "Bearer"
    header: str | None = "X-Api-Key"

    def extract(self, authorization: str | None, plain: str | None) -> str | None:
        """The presented key, or None when the request carries none."""
        if self.scheme is not None and authorization:
            method, _, value = authorization.strip().partition(" ")
            if method.lower() == self.scheme.lower() and value.strip():
                return value.strip()
        if self.header is not None and plain and plain.strip():
            return plain.strip()
        return None


def rejection_body(rejection: Rejection) -> bytes:
    """The JSON body of a 401/403 response: the reason, never the key."""
    error = "forbidden" if rejection.http_status == 403 else "unauthorized"
    return json.dumps({"error": error, "reason": rejection.reason}).encode()


def challenge(headers: KeyHeaders, rejection: Rejection) -> str:
    """The ``WWW-Authenticate`` value for a 401 (RFC 6750 style)."""
    scheme = headers.scheme or "ApiKey"
    return f'{scheme} error="invalid_token", error_description="{rejection.reason}"'
