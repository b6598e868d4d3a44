"""The in-memory fake passes the store contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotatectl.errors import ConfigError
from rotatectl.registry import AdapterContext
from rotatectl.testing.memory import MemoryStore
from rotatectl.testing.store_contract import PATH, StoreContract, make_rotation


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()


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
