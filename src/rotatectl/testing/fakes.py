"""Test doubles for engine tests: a fake clock, issuer, probe and notifier.

Public test kit: plugin authors and rotatectl's own tests use them. They are
thread-safe, so concurrency tests can share one instance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from .. import keyformat
from ..errors import IssuerError, NotifierError, ProbeError
from ..model import Event, IssuedKey, IssuerKey, KeyUsage, UsageStatus
from ..ports import Clock


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    ``sleeps`` records every sleep request, so tests can assert how long a
    ``--wait`` loop would have slept.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start (e.g. tzinfo=UTC)")
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += timedelta(seconds=seconds)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move time forward by ``delta`` (a timedelta or seconds); return the new now."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("FakeClock only moves forward")
        with self._lock:
            self._now += step
            return self._now


class FakeKey(NamedTuple):
    """A key held by :class:`FakeIssuer`. ``fingerprint`` = keyformat.fingerprint(value)."""

    tag: str | None
    active: bool
    deleted: bool
    fingerprint: str
    credential: str
    key_id: str
    created: datetime | None = None


class FakeIssuer:
    """An in-memory issuer with real state (passes :class:`IssuerContract`).

    Keys are real generated keys (``prefix``); ``created`` is stamped from
    ``clock`` when one is given.

    ``keys`` maps issuer_ref -> :class:`FakeKey` (deleted keys stay, flagged).
    ``calls`` records ``(method, args)`` without key values, to assert
    idempotency (see :meth:`count`). Failure injection: a method name in
    ``fail`` raises IssuerError before doing anything; one in ``fail_after``
    does the work, then raises (a lost response, e.g. a timeout after the
    issuer acted).
    """

    def __init__(self, prefix: str = "rk", clock: Clock | None = None) -> None:
        self.prefix = prefix
        self.clock = clock
        self.keys: dict[str, FakeKey] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: set[str] = set()
        self.fail_after: set[str] = set()
        self._serial = 0
        self._lock = threading.RLock()

    # -- assertions helpers -------------------------------------------------

    def count(self, method: str) -> int:
        """How many times ``method`` was called (including failed calls)."""
        with self._lock:
            return sum(1 for name, _ in self.calls if name == method)

    def works(self, value: str) -> bool:
        """True if ``value`` is a key this issuer minted and it is active (not deleted)."""
        try:
            fp = keyformat.fingerprint(value)
        except keyformat.KeyFormatError:
            return False
        with self._lock:
            return any(
                k.fingerprint == fp and k.active and not k.deleted for k in self.keys.values()
            )

    def live(self, credential: str | None = None) -> list[str]:
        """issuer_refs of non-deleted keys (of ``credential``, if given)."""
        with self._lock:
            return [
                ref
                for ref, k in self.keys.items()
                if not k.deleted and (credential is None or k.credential == credential)
            ]

    # -- KeyIssuer ----------------------------------------------------------

    def _enter(self, method: str, args: tuple[Any, ...]) -> None:
        self.calls.append((method, args))
        if method in self.fail:
            raise IssuerError(f"fake issuer: injected failure in {method}", retryable=True)

    def _leave(self, method: str) -> None:
        if method in self.fail_after:
            raise IssuerError(f"fake issuer: injected failure after {method}", retryable=True)

    def _get(self, credential: str, issuer_ref: str) -> FakeKey:
        key = self.keys.get(issuer_ref)
        if key is None or key.credential != credential:
            raise IssuerError(f"fake issuer: {credential}: no key {issuer_ref!r}")
        return key

    def create(self, credential: str, version_id: str, scopes: Sequence[str]) -> IssuedKey:
        with self._lock:
            self._enter("create", (credential, version_id, tuple(scopes)))
            value = keyformat.generate(self.prefix)
            parsed = keyformat.parse(value)
            fp = keyformat.secret_hash(parsed.secret)
            self._serial += 1
            ref = f"fake-{self._serial:04d}"
            created = self.clock.now() if self.clock is not None else None
            self.keys[ref] = FakeKey(
                tag=version_id,
                active=True,
                deleted=False,
                fingerprint=fp,
                credential=credential,
                key_id=parsed.key_id,
                created=created,
            )
            self._leave("create")
            return IssuedKey(value=value, key_id=parsed.key_id, fingerprint=fp, issuer_ref=ref)

    def list_keys(self, credential: str) -> list[IssuerKey] | None:
        with self._lock:
            self._enter("list_keys", (credential,))
            found = [
                IssuerKey(issuer_ref=ref, tag=k.tag, active=k.active, created=k.created)
                for ref, k in self.keys.items()
                if k.credential == credential and not k.deleted
            ]
            self._leave("list_keys")
            return found

    def disable(self, credential: str, issuer_ref: str) -> None:
        with self._lock:
            self._enter("disable", (credential, issuer_ref))
            key = self._get(credential, issuer_ref)
            self.keys[issuer_ref] = key._replace(active=False)
            self._leave("disable")

    def enable(self, credential: str, issuer_ref: str) -> None:
        with self._lock:
            self._enter("enable", (credential, issuer_ref))
            key = self._get(credential, issuer_ref)
            if key.deleted:
                raise IssuerError(f"fake issuer: {credential}: key {issuer_ref!r} was deleted")
            self.keys[issuer_ref] = key._replace(active=True)
            self._leave("enable")

    def delete(self, credential: str, issuer_ref: str) -> None:
        with self._lock:
            self._enter("delete", (credential, issuer_ref))
            key = self.keys.get(issuer_ref)
            if key is not None and key.credential == credential:
                self.keys[issuer_ref] = key._replace(active=False, deleted=True)
            self._leave("delete")


class Sighting(NamedTuple):
    key_id: str
    at: datetime
    client: str | None
    credential: str | None
    result: str = "ok"


class FakeProbe:
    """A usage probe fed by :meth:`see`.

    Key ids in ``unknown`` answer UNKNOWN; ``fail = True`` makes
    :meth:`usage` raise ProbeError. ``calls`` counts queries.
    """

    def __init__(self) -> None:
        self.sightings: list[Sighting] = []
        self.unknown: set[str] = set()
        self.fail = False
        self.calls = 0
        self._lock = threading.Lock()

    def see(
        self,
        key_id: str,
        at: datetime,
        client: str | None = None,
        credential: str | None = None,
        result: str = "ok",
    ) -> None:
        """Record that ``key_id`` was presented at ``at`` (by any credential unless given);
        ``result="rejected"`` when the verifier refused it."""
        with self._lock:
            self.sightings.append(Sighting(key_id, at, client, credential, result))

    def usage(
        self, credential: str, key_ids: Sequence[str], since: datetime, now: datetime
    ) -> dict[str, KeyUsage]:
        with self._lock:
            self.calls += 1
            if self.fail:
                raise ProbeError("fake probe: injected failure")
            result: dict[str, KeyUsage] = {}
            for key_id in key_ids:
                if key_id in self.unknown:
                    result[key_id] = KeyUsage(status=UsageStatus.UNKNOWN, detail="fake: unknown")
                    continue
                hits = [
                    s
                    for s in self.sightings
                    if s.key_id == key_id
                    and since <= s.at <= now
                    and (s.credential is None or s.credential == credential)
                ]
                if not hits:
                    result[key_id] = KeyUsage(status=UsageStatus.NOT_SEEN)
                    continue
                clients = sorted({s.client for s in hits if s.client is not None})
                result[key_id] = KeyUsage(
                    status=UsageStatus.SEEN,
                    last_seen=max(s.at for s in hits),
                    count=len(hits),
                    clients=tuple(clients[:10]),
                    rejected=sum(1 for s in hits if s.result != "ok"),
                )
            return result


class RecordingNotifier:
    """Collects delivered events in ``events``; ``fail = True`` raises NotifierError.

    Failed attempts are kept in ``attempts`` too, so tests can check that a
    failing notifier was called and did not fail the rotation.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.attempts: list[Event] = []
        self.fail = False
        self._lock = threading.Lock()

    def notify(self, event: Event) -> None:
        with self._lock:
            self.attempts.append(event)
            if self.fail:
                raise NotifierError(f"recording notifier: injected failure ({event.kind})")
            self.events.append(event)

    def kinds(self) -> list[str]:
        """The kinds of the delivered events, in order."""
        with self._lock:
            return [e.kind for e in self.events]
