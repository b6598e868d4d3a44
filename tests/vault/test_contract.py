"""VaultStore passes the store contract and every feature contract against a real
OpenBao dev server, alone and as the secondary of a fan-out behind a local store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotatectl.ports import SecretStore
from rotatectl.stores.fanout import FanoutStore
from rotatectl.stores.local import LocalStore
from rotatectl.stores.vault import VaultStore
from rotatectl.testing.feature_contracts import (
    AccessCheckContract,
    AtomicRecordContract,
    BatchedReadsContract,
    DriftContract,
    HistoryContract,
    RollingWindowContract,
    StateContract,
)
from rotatectl.testing.store_contract import StoreContract

from .conftest import Vault
from .test_layout import policy_text


def tamper_vault(vault: Vault, store: VaultStore, path: str, value: str) -> None:
    """What ``bao kv put -cas=N <client path> current=-`` does: a new key for clients."""
    mount, _, rel = store.client_path(path).partition("/")
    kv = vault.kv()
    meta = kv.read_secret_metadata(rel, mount_point=mount)
    version = int(meta["data"]["current_version"])
    kv.create_or_update_secret(rel, {"current": value}, cas=version, mount_point=mount)


def without_destroy(vault: Vault) -> VaultStore:
    """A store whose token has the example operator policy minus KV ``destroy``."""
    hcl = policy_text("rotatectl-operator.hcl", vault).replace(
        f'path "secret/destroy/{vault.prefix}/*"', 'path "secret/destroy/elsewhere/*"'
    )
    assert "elsewhere" in hcl
    vault.policy(f"{vault.prefix}-nodestroy", hcl)
    return vault.store(token=vault.token_with(f"{vault.prefix}-nodestroy"))


class OpenBao:
    @pytest.fixture
    def store(self, vault: Vault) -> Iterator[VaultStore]:
        self.vault = vault
        store = vault.store()
        yield store
        store.close()

    def tamper(self, store: VaultStore, path: str, value: str) -> None:
        tamper_vault(self.vault, store, path, value)

    def denied(self, store: SecretStore) -> tuple[SecretStore, str]:
        return without_destroy(self.vault), "'update' on secret/destroy/"


class TestVaultStoreContract(OpenBao, StoreContract):
    pass


class TestVaultState(OpenBao, StateContract):
    pass


class TestVaultBatchedReads(OpenBao, BatchedReadsContract):
    pass


class TestVaultDrift(OpenBao, DriftContract):
    pass


class TestVaultHistory(OpenBao, HistoryContract):
    pass


class TestVaultRollingWindow(OpenBao, RollingWindowContract):
    pass


class TestVaultAccessCheck(OpenBao, AccessCheckContract):
    pass


class LocalThenOpenBao:
    """A fan-out: a local store is the primary, OpenBao the secondary (drift made there)."""

    @pytest.fixture
    def store(self, vault: Vault, tmp_path: Path) -> Iterator[FanoutStore]:
        self.vault = vault
        local = LocalStore(tmp_path / "state.db")
        yield FanoutStore([("local", local), ("bao", vault.store())])
        local.close()

    def tamper(self, store: FanoutStore, path: str, value: str) -> None:
        secondary = store.secondaries[0][1]
        assert isinstance(secondary, VaultStore)
        tamper_vault(self.vault, secondary, path, value)

    def denied(self, store: FanoutStore) -> tuple[SecretStore, str]:
        weak = FanoutStore([store.destinations[0], ("bao", without_destroy(self.vault))])
        return weak, "destination bao: permission denied: needs 'update' on secret/destroy/"


class TestLocalThenVaultState(LocalThenOpenBao, StateContract):
    pass


class TestLocalThenVaultBatchedReads(LocalThenOpenBao, BatchedReadsContract):
    pass


class TestLocalThenVaultDrift(LocalThenOpenBao, DriftContract):
    pass


class TestLocalThenVaultHistory(LocalThenOpenBao, HistoryContract):
    pass


class TestLocalThenVaultRollingWindow(LocalThenOpenBao, RollingWindowContract):
    pass


class TestLocalThenVaultAccessCheck(LocalThenOpenBao, AccessCheckContract):
    pass


class TestVaultAtomicRecord(OpenBao, AtomicRecordContract):
    pass


class TestLocalThenVaultAtomicRecord(LocalThenOpenBao, AtomicRecordContract):
    pass
