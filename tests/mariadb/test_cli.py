"""Database passwords through the CLI (issue 19), on the local store against a real
MariaDB server: the ``mysql`` issuer alternates the pair and publishes the document
AWS's database rotation templates use; the ``mysql`` probe holds the usage gate while
a session of the old user is open and names its client."""

from __future__ import annotations

import json
from typing import Any

import pymysql
import pytest

from ..conftest import Cli
from .conftest import Pair

NAME = "db/app"


def configure(cli: Cli, pair: Pair) -> None:
    users, port = json.dumps(list(pair.users)), pair.server.port
    cli.env["ROTATECTL_MYSQL_DSN"] = pair.server.admin_url
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "1h"

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "mysql", host = "127.0.0.1", port = {port}, dbname = "app" }}
issuer = {{ type = "mysql", users = {users}, group = "{pair.group}" }}
usage = {{ type = "mysql", users = {users} }}
"""
    )


def secret(cli: Cli) -> dict[str, object]:
    run = cli("get", NAME)
    assert run.code == 0, run.err
    doc: dict[str, object] = json.loads(run.out)
    return doc


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
    documents = []
    for _ in range(6):
        run = cli("rotate", NAME, "--wait")
        assert run.code == 0, run.out + run.err
        documents.append(secret(cli))
    for number, doc in enumerate(documents, start=1):
        # The shape of AWS's database rotation templates: consumers keep working.
        assert set(doc) == {"engine", "host", "port", "dbname", "username", "password"}
        assert (doc["engine"], doc["host"], doc["port"]) == ("mysql", "127.0.0.1", pair.server.port)
        assert doc["username"] == pair.users[(number - 1) % 2]
    last = documents[-1]
    assert pair.can_login(str(last["username"]), str(last["password"]))
    for old in documents[:-1]:
        assert not pair.can_login(str(old["username"]), str(old["password"]))
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    assert [v["state"] for v in status["versions"]][-2:] == ["retired", "current"]
    for done in cli.runs:
        if done.args[:1] != ("get",):
            for doc in documents:
                assert str(doc["password"]) not in done.out + done.err


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
