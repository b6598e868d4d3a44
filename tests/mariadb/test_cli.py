"""Database passwords through the CLI (issue 19), on the local store against a real
MariaDB server: the ``mysql`` issuer alternates the pair and publishes the document
AWS's database rotation templates use; the ``mysql`` probe holds the usage gate while
a session of the old user is open and names its client."""

from __future__ import annotations

import json
from typing import Any

import pymysql
import pytest

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair

NAME = "db/app"


def configure(cli: Cli, pair: Pair, retain: str = "1h") -> None:
    users, port = json.dumps(list(pair.users)), pair.server.port
    cli.env["ROTATECTL_MYSQL_DSN"] = pair.server.admin_url
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "{retain}"

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "mysql", host = "127.0.0.1", port = {port}, dbname = "app" }}
issuer = {{ type = "mysql", users = {users}, group = "{pair.group}" }}
usage = {{ type = "mysql", users = {users} }}
"""
    )


def secret(cli: Cli) -> dict[str, Any]:
    return dbflows.secret(cli, NAME)


def login(pair: Pair, doc: dict[str, object]) -> Any:
    return pair.server.connect(str(doc["username"]), str(doc["password"]))


def alive(session: Any) -> bool:
    try:
        with session.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except pymysql.err.OperationalError:
        return False


def test_five_rotations_alternate_the_pair_and_retire_each_old_password(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair)
    expected = {"engine": "mysql", "host": "127.0.0.1", "port": pair.server.port}
    dbflows.rotations_alternate_and_retire_each_old_password(
        cli, NAME, pair.users, {**expected, "dbname": "app"}, pair.can_login
    )


def test_an_open_session_of_the_old_user_holds_the_gate_and_is_named(cli: Cli, pair: Pair) -> None:
    configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    session = login(pair, first)
    try:
        started = cli("rotate", NAME)
        assert started.code in (0, 4), started.out + started.err
        held = cli("run")
        assert held.code in (0, 4), held.out + held.err
        usage = cli("usage", NAME)
        assert usage.code in (0, 4), usage.out + usage.err
        # The laggard named by its address, as the server sees it.
        client = "{}:{}".format(*session._sock.getsockname()[:2])
        assert client.startswith("127.0.0.1:")
        assert f"old key still in use (last seen 0s ago by {client})" in usage.out, usage.out
        status = json.loads(cli("-o", "json", "status").out)["credentials"][0]
        assert {v["number"]: v["state"] for v in status["versions"]} == {
            1: "previous",
            2: "current",
        }
        assert alive(session)
        assert pair.can_login(str(first["username"]), str(first["password"]))
    finally:
        session.close()
    done = cli("run")
    assert done.code == 0, done.out + done.err
    assert f"{NAME}: retired v1 (" in done.out
    assert not pair.can_login(str(first["username"]), str(first["password"]))


def test_an_emergency_locks_the_old_user_out_at_once_and_kills_its_sessions(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    session = login(pair, first)
    try:
        run = cli("emergency", NAME, "--yes", "--reason", "password in a paste")
        assert run.code == 0, run.out + run.err
        assert not alive(session)  # killed by the retirement
    finally:
        session.close()
    second = secret(cli)
    assert second["username"] != first["username"]
    with pytest.raises(pymysql.err.OperationalError, match="locked"):
        login(pair, first)
    assert pair.can_login(str(second["username"]), str(second["password"]))
