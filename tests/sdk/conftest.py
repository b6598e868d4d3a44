"""Helpers for the SDK tests: a store with real generated keys, and store views."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from rotatectl import keyformat
from rotatectl.errors import StoreUnavailableError
from rotatectl.model import AcceptedKey, Version, VersionState
from rotatectl.testing.fakes import FakeClock
from rotatectl.testing.memory import MemoryStore

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Keys:
    """A MemoryStore whose versions hold real generated keys; moves them through states."""

    def __init__(self, store: MemoryStore | None = None, prefix: str = "rk_test") -> None:
        self.store = store or MemoryStore()
        self.prefix = prefix
        self._numbers = itertools.count(1)

    def publish(
        self,
        path: str,
        *,
        scopes: Sequence[str] = (),
        expires: datetime | None = None,
    ) -> tuple[str, Version]:
        """A new pending key: (value, version)."""
        value = keyformat.generate(self.prefix)
        number = next(self._numbers)
        version = Version(
            version_id=f"v{number}",
            number=number,
            key_id=keyformat.parse(value).key_id,
            fingerprint=keyformat.fingerprint(value),
            state=VersionState.PENDING,
            created=T0,
            expires=expires,
            scopes=tuple(scopes),
        )
        self.store.publish(path, version, value)
        return value, version

    def current(self, path: str, **kw: object) -> tuple[str, Version]:
        """A new key promoted to current (the old current becomes previous)."""
        value, version = self.publish(path, **kw)  # type: ignore[arg-type]
        old = next((v for v in self.store.versions(path) if v.state is VersionState.CURRENT), None)
        self.store.promote(path, version.version_id, old.version_id if old else None, T0)
        return value, version

    def retire(self, path: str, version: Version) -> None:
        state = next(v for v in self.store.versions(path) if v.version_id == version.version_id)
        self.store.set_state(path, version.version_id, VersionState.RETIRED, state.state, T0)


class VerifierView:
    """Only what a verifier may read: ``accepted_keys``. Anything else fails loudly."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.calls = 0
        self.down = False

    def accepted_keys(self, path: str, credential: str) -> list[AcceptedKey]:
        self.calls += 1
        if self.down:
            raise StoreUnavailableError(f"{path}: store unreachable (simulated)")
        return self._store.accepted_keys(path, credential)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        raise AssertionError("a verifier must never read a key value")


class FlakyValues:
    """``read_value`` of a store that can be switched off."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.reads = 0
        self.down = False

    def read_value(self, path: str) -> str:
        self.reads += 1
        if self.down:
            raise StoreUnavailableError(f"{path}: store unreachable (simulated)")
        return self._store.read_value(path)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def later(clock: FakeClock, seconds: float) -> None:
    clock.advance(timedelta(seconds=seconds))
