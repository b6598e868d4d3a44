"""Emergency rollover and rollback on OpenBao through the real CLI."""

from __future__ import annotations

import pytest

from rotatectl.model import VersionState

from ..conftest import Cli
from .conftest import Vault, write_config
from .test_cli import CREDENTIAL, NAME, assert_no_leak, values


@pytest.mark.slow
def test_emergency_then_refused_rollback(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    store = vault.store()
    assert cli("rotate", NAME).code == 0
    leaked = vault.read(NAME)["current"]
    run = cli("emergency", NAME, "--reason", "drill", "--yes")
    assert run.code == 0, run.out + run.err
    assert "old key revoked" in run.out
    # Clients read the new key; verifiers no longer accept the leaked one.
    assert vault.read(NAME)["current"] != leaked
    states = [v.state for v in store.versions(NAME)]
    assert states == [VersionState.RETIRED, VersionState.CURRENT]
    accepted = store.accepted_keys(NAME, NAME)
    assert [k.version_id for k in accepted] == [store.versions(NAME)[1].version_id]
    run = cli("rollback", NAME)
    assert run.code == 2 and "compromised" in run.err
    assert_no_leak(cli, values(store) | {leaked})
