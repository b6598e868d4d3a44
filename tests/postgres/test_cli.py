"""Database passwords through the CLI (issue 19), on the local store against a real
PostgreSQL server: the ``postgres`` issuer alternates the pair and publishes the
document AWS's database rotation templates use; the ``postgres`` probe holds the
usage gate while a session of the old role is open and names its client."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import psycopg
import pytest

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair

NAME = "db/app"


def configure(cli: Cli, pair: Pair, retain: str = "1h") -> None:
    users, port = json.dumps(list(pair.users)), pair.server.port
    cli.env["ROTATECTL_POSTGRES_DSN"] = pair.server.admin_dsn
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "{retain}"

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "postgres", host = "127.0.0.1", port = {port}, dbname = "postgres" }}
issuer = {{ type = "postgres", users = {users}, group = "{pair.group}" }}
usage = {{ type = "postgres", users = {users} }}
"""
    )


def secret(cli: Cli) -> dict[str, Any]:
    return dbflows.secret(cli, NAME)


def test_five_rotations_alternate_the_pair_and_retire_each_old_password(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair)
    expected = {"engine": "postgres", "host": "127.0.0.1", "port": pair.server.port}
    dbflows.rotations_alternate_and_retire_each_old_password(
        cli, NAME, pair.users, {**expected, "dbname": "postgres"}, pair.can_login
    )


def test_an_open_session_of_the_old_role_holds_the_gate_and_is_named(cli: Cli, pair: Pair) -> None:
    configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    session = psycopg.connect(
        pair.server.dsn(str(first["username"]), str(first["password"])), autocommit=True
    )
    try:
        started = cli("rotate", NAME)
        assert started.code in (0, 4), started.out + started.err
        # The laggard named by its address, as the server sees it.
        with socket.socket(fileno=os.dup(session.fileno())) as sock:
            client = "{}:{}".format(*sock.getsockname()[:2])
        held = cli("run")
        assert held.code in (0, 4), held.out + held.err
        # run read the secret (its drift check): the static host is never masked.
        assert client in held.out + held.err and "<redacted>" not in held.out + held.err
        usage = cli("usage", NAME)
        assert usage.code in (0, 4), usage.out + usage.err
        assert f"old key still in use (last seen 0s ago by {client})" in usage.out, usage.out
        status = json.loads(cli("-o", "json", "status").out)["credentials"][0]
        assert {v["number"]: v["state"] for v in status["versions"]} == {
            1: "previous",
            2: "current",
        }
        assert pair.can_login(str(first["username"]), str(first["password"]))
    finally:
        session.close()
    done = cli("run")
    assert done.code == 0, done.out + done.err
    assert f"{NAME}: retired v1 (" in done.out
    assert not pair.can_login(str(first["username"]), str(first["password"]))


def test_an_emergency_shuts_the_old_role_out_at_once_and_ends_its_sessions(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    session = psycopg.connect(
        pair.server.dsn(str(first["username"]), str(first["password"])), autocommit=True
    )
    try:
        run = cli("emergency", NAME, "--yes", "--reason", "password in a paste")
        assert run.code == 0, run.out + run.err
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")  # terminated by the retirement
    finally:
        session.close()
    second = secret(cli)
    assert second["username"] != first["username"]
    assert not pair.can_login(str(first["username"]), str(first["password"]))
    assert pair.can_login(str(second["username"]), str(second["password"]))


def test_db_init_says_what_it_will_run_then_sets_the_pair_up_and_moves_grants(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair)
    app, app_b = pair.users
    # An existing login role with a grant of its own, as an application has today.
    with pair.server.admin() as admin:
        admin.execute(f'CREATE ROLE "{app}" LOGIN')
        admin.execute(f'CREATE TABLE "orders_{app}" (n int)')
        admin.execute(f'GRANT SELECT, INSERT ON "orders_{app}" TO "{app}"')
    try:
        dry = cli("db", "init", NAME, "--dry-run")
        assert dry.code == 0, dry.out + dry.err
        assert dry.out.splitlines() == [
            f"{NAME}: would run:",
            f'  CREATE ROLE "{pair.group}" NOLOGIN;',
            f'  CREATE ROLE "{app_b}" NOLOGIN;',
            f'  GRANT "{pair.group}" TO "{app}";',
            f'  GRANT "{pair.group}" TO "{app_b}";',
            f'  GRANT INSERT ON "public"."orders_{app}" TO "{pair.group}";',
            f'  REVOKE INSERT ON "public"."orders_{app}" FROM "{app}";',
            f'  GRANT SELECT ON "public"."orders_{app}" TO "{pair.group}";',
            f'  REVOKE SELECT ON "public"."orders_{app}" FROM "{app}";',
        ]
        with pair.server.admin() as admin:  # nothing changed
            roles = {r[0] for r in admin.execute("SELECT rolname FROM pg_roles").fetchall()}
        assert pair.group not in roles and app_b not in roles
        done = cli("db", "init", NAME)
        assert done.code == 0, done.out + done.err
        assert done.out.splitlines()[1:] == dry.out.splitlines()[1:]
        assert cli("db", "init", NAME).out == f"{NAME}: nothing to set up\n"
        # Both roles of the pair read the table through the group.
        for _ in range(2):
            assert cli("rotate", NAME, "--wait").code == 0
            doc = secret(cli)
            with psycopg.connect(pair.server.dsn(str(doc["username"]), str(doc["password"]))) as c:
                assert c.execute(f'SELECT count(*) FROM "orders_{app}"').fetchone() == (0,)
        audit = cli("audit", "show", "-o", "json")
        assert '"db-init"' in audit.out
    finally:
        with pair.server.admin() as admin:
            admin.execute(f'DROP TABLE IF EXISTS "orders_{app}"')


def test_db_init_of_an_issuer_with_nothing_to_set_up_is_refused(cli: Cli) -> None:
    refused = cli("db", "init", "plain/key")
    assert refused.code == 2
    assert refused.err == (
        "rotatectl: error: plain/key: issuer type 'generated' has nothing to set up\n"
    )
