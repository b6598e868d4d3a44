"""The in-memory fake passes the store contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotatectl.errors import ConfigError
from rotatectl.model import Rotation, Version
from rotatectl.ports import SecretStore, StoreBase
from rotatectl.registry import AdapterContext
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
from rotatectl.testing.store_contract import PATH, StoreContract, make_rotation


class MemoryFixture:
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()

    def tamper(self, store: MemoryStore, path: str, value: str) -> None:
        store.tamper(path, value)


class TestMemoryStore(MemoryFixture, StoreContract):
    pass


class TestMemoryState(MemoryFixture, StateContract):
    pass


class TestMemoryBatchedReads(MemoryFixture, BatchedReadsContract):
    pass


class TestMemoryDrift(MemoryFixture, DriftContract):
    restores = False  # one copy of each value: nothing to restore from


class TestMemoryHistory(MemoryFixture, HistoryContract):
    pass


class TestMemoryRollingWindow(MemoryFixture, RollingWindowContract):
    pass


class TestMemoryAccessCheck(MemoryFixture, AccessCheckContract):
    pass


class CoreOnly(StoreBase):
    """A store with the core port only (a memory store inside): every optional
    feature is StoreBase's default, which the feature contracts check too."""

    def __init__(self, inner: SecretStore | None = None) -> None:
        self.inner = inner if inner is not None else MemoryStore()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # the core methods StoreBase does not define

    def versions(self, path: str) -> list[Version]:
        return self.inner.versions(path)

    def load_rotation(self, path: str) -> tuple[Rotation | None, int]:
        return self.inner.load_rotation(path)

    def read_value(self, path: str, version_id: str | None = None) -> str:
        return self.inner.read_value(path, version_id)

    def publish(self, path: str, version: Version, value: str) -> None:
        self.inner.publish(path, version, value)


class CoreOnlyFixture:
    @pytest.fixture
    def store(self) -> CoreOnly:
        store = CoreOnly()
        assert store.features() == frozenset()
        return store

    def tamper(self, store: CoreOnly, path: str, value: str) -> None:
        store.inner.tamper(path, value)


class TestCoreOnlyState(CoreOnlyFixture, StateContract):
    pass


class TestCoreOnlyBatchedReads(CoreOnlyFixture, BatchedReadsContract):
    pass


class TestCoreOnlyDrift(CoreOnlyFixture, DriftContract):
    pass


class TestCoreOnlyHistory(CoreOnlyFixture, HistoryContract):
    pass


class TestCoreOnlyRollingWindow(CoreOnlyFixture, RollingWindowContract):
    pass


class TestCoreOnlyAccessCheck(CoreOnlyFixture, AccessCheckContract):
    pass


def _ctx(tmp_path: Path) -> AdapterContext:
    return AdapterContext(table="stores.mem", base_dir=tmp_path, state_dir=tmp_path)


def test_from_config_takes_no_settings(tmp_path: Path) -> None:
    assert isinstance(MemoryStore.from_config({}, _ctx(tmp_path)), MemoryStore)
    with pytest.raises(ConfigError, match=r"\[stores.mem\] path: unknown key"):
        MemoryStore.from_config({"path": "x"}, _ctx(tmp_path))


def test_rotation_history_keeps_replaced_records() -> None:
    store = MemoryStore()
    first = make_rotation("r1")
    revision = store.save_rotation(PATH, first, 0)
    revision = store.save_rotation(PATH, first, revision)  # same rotation: no history
    store.save_rotation(PATH, make_rotation("r2"), revision)
    assert store.rotation_history(PATH) == [first]


class TestMemoryAtomicRecord(MemoryFixture, AtomicRecordContract):
    pass


class TestCoreOnlyAtomicRecord(CoreOnlyFixture, AtomicRecordContract):
    pass
