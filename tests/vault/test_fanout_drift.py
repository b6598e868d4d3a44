"""Drift in the *secondary* destination of a two-store credential (local + OpenBao):
the fan-out store forwards the drift feature, so a value changed behind our back
in OpenBao is found by `status`, `check` and `run` (exit 3, naming the destination),
and `check --restore` puts rotatectl's value back there; `check --adopt` takes it as
the new current key in every destination."""

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


@pytest.mark.slow
def test_drift_in_the_secondary_destination_is_adopted_everywhere(cli: Cli, vault: Vault) -> None:
    """`check --adopt` takes the secondary's value as the new current key in *every*
    destination; the replaced key stays previous in both, under the adoption's rotation."""
    write_config(cli, vault, CREDENTIAL)
    cli.env.update(vault.server.cli_env())
    assert cli("rotate", NAME).code == 0
    outsider = "hunter2-typed-by-hand"
    overwrite_client(vault, outsider)
    assert cli("check", NAME).code == 3

    adopted = cli("check", NAME, "--adopt")
    assert adopted.code == 0, adopted.out + adopted.err
    assert "v2" in adopted.out and "stays accepted" in adopted.out, adopted.out
    assert client_read(vault) == outsider
    assert cli("get", NAME).out.strip() == outsider  # the primary (local) too
    status = cli("status", "-o", "json")
    assert status.code == 0, status.out + status.err
    [found] = json.loads(status.out)["credentials"]
    states = [(v["number"], v["state"]) for v in found["versions"]]
    assert sorted(states) == [(1, "previous"), (2, "current")], states
    assert vault.store().versions(NAME)[0].state.value == "previous"  # the secondary agrees
