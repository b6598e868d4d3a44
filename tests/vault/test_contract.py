"""VaultStore passes the store contract against a real OpenBao dev server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotatectl.stores.vault import VaultStore
from rotatectl.testing.store_contract import StoreContract

from .conftest import Vault


class TestVaultStoreContract(StoreContract):
    @pytest.fixture
    def store(self, vault: Vault) -> Iterator[VaultStore]:
        store = vault.store()
        yield store
        store.close()
