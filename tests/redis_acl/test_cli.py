"""Redis ACL passwords through the CLI (issue 19), on the local store against a real
Redis server: the ``redis`` issuer alternates the pair (or adds a second password to
one user) and publishes a JSON document with the user name beside the password; the
``redis`` probe holds the usage gate while a connection of the old user is open and
names its client."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from .. import dbflows
from ..conftest import Cli
from .conftest import Users
from .test_probe import address

NAME = "cache/app"
RULES = "~app:* +@read +@write -@dangerous"


def configure(
    cli: Cli, users: Users, strategy: str = "alternating", retain: str = "1h"
) -> tuple[str, ...]:
    names = users.names if strategy == "alternating" else users.names[:1]
    listed, port = json.dumps(list(names)), users.server.port
    cli.env["ROTATECTL_REDIS_URL"] = users.server.admin_url
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "{retain}"

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "redis", host = "127.0.0.1", port = {port} }}
issuer = {{ type = "redis", strategy = "{strategy}", users = {listed}, rules = "{RULES}" }}
usage = {{ type = "redis", users = {listed} }}
"""
    )
    return names


def secret(cli: Cli) -> dict[str, Any]:
    return dbflows.secret(cli, NAME)


def works(users: Users, doc: dict[str, Any]) -> bool:
    return bool(users.server.can_auth(str(doc["username"]), str(doc["password"])))


def states(cli: Cli) -> dict[int, str]:
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    return {v["number"]: v["state"] for v in status["versions"]}


def test_five_rotations_alternate_the_pair_and_retire_each_old_password(
    cli: Cli, users: Users
) -> None:
    configure(cli, users)
    expected = {"engine": "redis", "host": "127.0.0.1", "port": users.server.port}
    dbflows.rotations_alternate_and_retire_each_old_password(
        cli, NAME, users.names, expected, users.server.can_auth
    )


def test_an_open_connection_of_the_old_user_holds_the_gate_and_is_named(
    cli: Cli, users: Users
) -> None:
    configure(cli, users)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    live = users.server.client(str(first["username"]), str(first["password"]))
    try:
        live.get("app:x")
        started = cli("rotate", NAME)
        assert started.code in (0, 4), started.out + started.err
        held = cli("run")
        assert held.code in (0, 4), held.out + held.err
        usage = cli("usage", NAME)
        assert usage.code in (0, 4), usage.out + usage.err
        client = address(live)  # the laggard, by the address the server sees
        assert f"old key still in use (last seen 0s ago by {client})" in usage.out, usage.out
        assert states(cli) == {1: "previous", 2: "current"}
        assert works(users, first)
    finally:
        live.close()
    done = cli("run")
    assert done.code == 0, done.out + done.err
    assert f"{NAME}: retired v1 (" in done.out
    assert not works(users, first)


def test_dual_password_both_work_in_the_overlap_and_only_the_new_one_after(
    cli: Cli, users: Users
) -> None:
    (user,) = configure(cli, users, "dual-password")
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    live = users.server.client(user, str(first["password"]))
    try:
        live.get("app:x")
        assert cli("rotate", NAME).code in (0, 4)
        assert cli("run").code in (0, 4)
        second = secret(cli)
        assert second["username"] == first["username"] == user
        assert works(users, first) and works(users, second)  # the overlap: both passwords
        usage = cli("usage", NAME)
        assert "Redis does not tell which one a connection used" in usage.out, usage.out
        assert address(live) in usage.out
        assert states(cli) == {1: "previous", 2: "current"}  # unknown holds the gate
    finally:
        live.close()
    done = cli("run")
    assert done.code == 0, done.out + done.err
    assert f"{NAME}: retired v1 (" in done.out
    assert not works(users, first) and works(users, second)


def test_an_emergency_shuts_the_old_user_out_at_once_and_kills_its_connection(
    cli: Cli, users: Users
) -> None:
    configure(cli, users)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    live = users.server.client(str(first["username"]), str(first["password"]))
    try:
        live.get("app:x")
        run = cli("emergency", NAME, "--yes", "--reason", "password in a paste")
        assert run.code == 0, run.out + run.err
        with pytest.raises(redis.ConnectionError):
            live.get("app:x")  # killed by the retirement
    finally:
        live.close()
    second = secret(cli)
    assert second["username"] != first["username"]
    assert not works(users, first) and works(users, second)
