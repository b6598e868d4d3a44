"""A rollback to a key whose retention has passed (found by the stateful test, issue 21).

A `run` killed between deleting a retired key at the issuer and recording it
destroyed leaves the store calling it retired. A rollback to it used to be planned,
then failed at every run (the issuer cannot enable a deleted key): a rotation stuck
for good, and the destroy it blocked never finished. A key past its retention is
being destroyed: rollback now refuses it (exit 2, nothing written), and the next
`run` finishes the destroy.
"""

from __future__ import annotations

import json
import time

from .. import dbflows
from ..conftest import Cli
from .conftest import ADMIN_API_ISSUER, AdminApi
from .test_cli import configure


def test_rollback_refuses_a_key_whose_destroy_was_cut_short(
    cli: Cli, name: str, admin_api: AdminApi
) -> None:
    cli.env.update(admin_api.env)
    configure(cli, name, f'{{ type = "command", command = ["{ADMIN_API_ISSUER}"] }}', retain="1s")
    assert cli("rotate", name, "--wait").code == 0
    assert cli("rotate", name, "--wait").code == 0  # v1 retired
    time.sleep(1.2)  # past retain: `run` destroys v1, and is killed half-way
    dbflows.kill_at(cli, "after-destroy-issuer", "run")
    assert states(cli, name) == ["retired", "current"]  # the store's word; the API's key is gone
    assert not admin_api.keys(name) or len(admin_api.keys(name)) == 1

    refused = cli("rollback", name)
    assert refused.code == 2, refused.out + refused.err
    assert "v1" in refused.err and "retention" in refused.err, refused.err
    assert states(cli, name) == ["retired", "current"]  # nothing written

    finished = cli("run")
    assert finished.code == 0, finished.out + finished.err
    assert states(cli, name) == ["destroyed", "current"]


def states(cli: Cli, name: str) -> list[str]:
    status = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]
    return [v["state"] for v in status["versions"]]
