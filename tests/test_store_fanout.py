"""Several destinations: the fan-out passes the store contract and holds a rotation
while any destination is down, so the stores never disagree about what is current."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.engine import Outcome, Target
from rotatectl.errors import StoreUnavailableError
from rotatectl.model import Phase, VersionState
from rotatectl.report import collect_status
from rotatectl.stores.fanout import FanoutStore
from rotatectl.stores.local import LocalStore
from rotatectl.testing.feature_contracts import (
    AccessCheckContract,
    AtomicRecordContract,
    BatchedReadsContract,
    DriftContract,
    HistoryContract,
    RollingWindowContract,
    StateContract,
)
from rotatectl.testing.memory import MemoryStore
from rotatectl.testing.store_contract import StoreContract

from .test_runner import POLICY, World
from .test_store_local import tamper_local

NAME = "partners/acme"


# Repairing drift in a fan-out's *secondary* needs one meaning of adopt and a
# way to rewrite a secondary from the primary (issue 16, item 2): known defects,
# xfail(strict) so the suite says when they are fixed.
class TestFanoutStore(StoreContract):
    @pytest.fixture
    def store(self) -> FanoutStore:
        return FanoutStore([("a", MemoryStore()), ("b", MemoryStore())])


class TwoLocal:
    """A fan-out over two local stores (two files); drift is made in the secondary."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FanoutStore]:
        a, b = LocalStore(tmp_path / "a.db"), LocalStore(tmp_path / "b.db")
        yield FanoutStore([("a", a), ("b", b)])
        a.close()
        b.close()

    def tamper(self, store: FanoutStore, path: str, value: str) -> None:
        secondary = store.secondaries[0][1]
        assert isinstance(secondary, LocalStore)
        tamper_local(secondary, path, value)


class TestTwoLocalState(TwoLocal, StateContract):
    pass


class TestTwoLocalBatchedReads(TwoLocal, BatchedReadsContract):
    pass


class TestTwoLocalDrift(TwoLocal, DriftContract):
    pass


class TestTwoLocalHistory(TwoLocal, HistoryContract):
    pass


class TestTwoLocalRollingWindow(TwoLocal, RollingWindowContract):
    pass


class TestTwoLocalAccessCheck(TwoLocal, AccessCheckContract):
    pass


class Flaky:
    """A store that can be taken down: every call raises StoreUnavailableError."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            if self.down:
                raise StoreUnavailableError("connection refused")
            return attr(*args, **kw)

        return call


class Destinations(World):
    def __init__(self) -> None:
        super().__init__()
        self.primary = MemoryStore()
        self.second = Flaky(MemoryStore())
        self.store = FanoutStore([("vault", self.primary), ("aws", self.second)])  # type: ignore[list-item]

    def target(self, name: str = NAME) -> Target:
        t = super().target(name)
        return Target(**{**t.__dict__, "store_name": "vault+aws"})

    def both(self) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        def view(store: Any) -> list[tuple[int, str]]:
            return [(v.number, v.state.value) for v in store.versions(NAME)]

        return view(self.primary), view(self.second.inner)


def test_a_rotation_reaches_every_destination_and_clients_of_each_read_the_same_key() -> None:
    w = Destinations()
    w.runner().rotate(w.target())
    w.rotations_started = 2
    r = w.runner().rotate(w.target(), propagation=timedelta(0), overlap=timedelta(0))
    assert r.outcome is Outcome.DONE
    assert w.both() == ([(1, "retired"), (2, "current")], [(1, "retired"), (2, "current")])
    assert w.primary.read_value(NAME) == w.second.inner.read_value(NAME)
    status = collect_status(w.target(), w.clock.now())
    assert status.destinations == (("vault", 2), ("aws", 2)) and not status.disagree


def test_a_destination_down_at_publish_holds_promotion_everywhere_until_it_returns() -> None:
    w = Destinations()
    w.runner().rotate(w.target())

    def down_after_start(name: str) -> None:
        if name == "after-start":
            w.second.down = True

    w.rotations_started = 2
    r = w.runner(boundary=down_after_start).rotate(w.target())
    assert r.outcome is Outcome.FAILED and "destination aws" in r.message
    # Pending in the primary, missing in the secondary; nothing promoted anywhere.
    assert w.both() == ([(1, "current"), (2, "pending")], [(1, "current")])
    w.clock.advance(POLICY.propagation * 10)
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.FAILED
    assert w.both() == ([(1, "current"), (2, "pending")], [(1, "current")])
    status = collect_status(w.target(), w.clock.now())
    assert status.disagree and "connection refused" in str(status.destinations[1][1])

    w.second.down = False
    r = w.runner().advance(w.target())
    # Now pending everywhere; the propagation delay starts only now.
    assert r.outcome is Outcome.WAITING and r.phase is Phase.PROPAGATE
    assert r.until == w.clock.now() + POLICY.propagation
    assert w.both() == ([(1, "current"), (2, "pending")], [(1, "current"), (2, "pending")])
    w.clock.advance(POLICY.propagation)
    w.runner().advance(w.target())
    assert w.both() == ([(1, "previous"), (2, "current")], [(1, "previous"), (2, "current")])


def test_a_destination_down_at_promotion_promotes_nowhere() -> None:
    w = Destinations()
    w.runner().rotate(w.target())
    w.rotations_started = 2
    w.runner().rotate(w.target())
    w.clock.advance(POLICY.propagation)
    w.second.down = True
    r = w.runner().advance(w.target())
    assert r.outcome is Outcome.FAILED
    assert w.both() == ([(1, "current"), (2, "pending")], [(1, "current"), (2, "pending")])
    w.second.down = False
    w.runner().advance(w.target())
    primary, second = w.both()
    assert primary == second == [(1, "previous"), (2, "current")]
    assert {v.state for v in w.primary.versions(NAME)} == {
        VersionState.PREVIOUS,
        VersionState.CURRENT,
    }


class TestTwoLocalAtomicRecord(TwoLocal, AtomicRecordContract):
    pass
