"""SecretsManagerStore passes the core store contract, in process and over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotatectl.stores.aws import SecretsManagerStore
from rotatectl.testing.store_contract import StoreContract

from .conftest import MotoServer, make_store


class TestInProcess(StoreContract):
    @pytest.fixture
    def store(self, mocked: None, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        s = make_store(tmp_path)
        yield s
        s.close()


class TestOverHttp(StoreContract):
    @pytest.fixture
    def store(self, moto: MotoServer, tmp_path: Path) -> Iterator[SecretsManagerStore]:
        s = make_store(tmp_path, moto.url)
        yield s
        s.close()
