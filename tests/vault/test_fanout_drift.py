"""Drift in the *secondary* destination of a two-store credential (local + OpenBao):
the fan-out store forwards the drift feature, so a value changed behind our back
in OpenBao is found by `status`, `check` and `run` (exit 3, naming the destination),
and `check --restore` puts rotatectl's value back there."""

from __future__ import annotations

import json

import pytest

from ..conftest import Cli
from .conftest import Vault, write_config
from .test_drift import client_read, overwrite_client

NAME = "partners/acme"
CREDENTIAL = f"""
[defaults]
retain = "1s"

[credentials."{NAME}"]
store = ["local", "vault"]
issuer = {{ type = "generated", prefix = "rk_test" }}
"""


@pytest.mark.slow
def test_drift_in_the_secondary_destination_is_found_and_restored(cli: Cli, vault: Vault) -> None:
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    assert cli("rotate", NAME).code == 0
    ours = client_read(vault)
    assert ours is not None
    assert cli("status").code == 0

    overwrite_client(vault, "hunter2-typed-by-hand")
    status = cli("status", "-o", "json")
    assert status.code == 3, status.out + status.err
    [found] = json.loads(status.out)["credentials"]
    assert any(line.startswith("destination vault:") for line in found["drift"]), found["drift"]
    run = cli("run")
    assert run.code == 3 and NAME in run.out + run.err and "drift" in run.out + run.err
    check = cli("check", NAME)
    assert check.code == 3 and "destination vault" in check.out + check.err

    restored = cli("check", NAME, "--restore")
    assert restored.code == 0, restored.out + restored.err
    assert client_read(vault) == ours
    assert cli("status").code == 0
    assert cli("run").code == 0
