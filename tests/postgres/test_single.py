"""The ``single`` strategy of the ``postgres`` issuer through the CLI (issue 19): one
role, its password changed at promotion. PostgreSQL gives a role one password, so a
client still holding the old one fails to connect until it re-reads the secret; the
config must acknowledge that (``accept_login_failures = true``). Sessions opened with
the old password are the old key's usage: they hold the gate, and retiring the key
(or an emergency) ends them. A rollback gives the role the earlier password back."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import psycopg
import pytest

from rotatectl import keyformat
from rotatectl.issuers.postgres_single import PostgresSingleRoleIssuer
from rotatectl.ports import KeyIssuer, issuer_features
from rotatectl.testing.issuer_contract import IssuerContract

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair

NAME = "db/single"
CRED = "db/single"


def configure(cli: Cli, pair: Pair, *, accept: bool = True, retain: str = "1h") -> str:
    role = pair.users[0]
    cli.env["ROTATECTL_POSTGRES_DSN"] = pair.server.admin_dsn
    acknowledged = "accept_login_failures = true, " if accept else ""
    port = pair.server.port
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
issuer = {{ type = "postgres", strategy = "single", {acknowledged}users = ["{role}"] }}
usage = {{ type = "postgres", users = ["{role}"] }}
"""
    )
    return role


def secret(cli: Cli) -> dict[str, Any]:
    return dbflows.secret(cli, NAME)


def states(cli: Cli) -> dict[int, str]:
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    return {v["number"]: v["state"] for v in status["versions"]}


def client_of(session: psycopg.Connection[Any]) -> str:
    """The session's client address as the server sees it."""
    with socket.socket(fileno=os.dup(session.fileno())) as sock:
        return "{}:{}".format(*sock.getsockname()[:2])


def test_single_is_refused_unless_the_config_accepts_its_login_failures(
    cli: Cli, pair: Pair
) -> None:
    configure(cli, pair, accept=False)
    run = cli("rotate", NAME, "--wait")
    assert run.code == 2, run.out + run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert "accept_login_failures" in lines[0] and "strategy 'single'" in lines[0], lines[0]
    assert not pair.can_login(pair.users[0], "anything")


def test_each_promotion_changes_the_one_roles_password(cli: Cli, pair: Pair) -> None:
    role = configure(cli, pair)
    expected = {"engine": "postgres", "host": "127.0.0.1", "port": pair.server.port}
    dbflows.rotations_alternate_and_retire_each_old_password(
        cli, NAME, (role, role), {**expected, "dbname": "postgres"}, pair.can_login, rotations=3
    )
    # One role only: the second name of a pair is never created.
    with pair.server.admin() as admin:
        found = admin.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"{role}%",)
        ).fetchall()
    assert [r[0] for r in found] == [role]


def test_a_session_of_the_old_password_holds_the_gate_and_rollback_restores_it(
    cli: Cli, pair: Pair
) -> None:
    role = configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    assert cli("rotate", NAME, "--wait").code == 0
    second = secret(cli)
    assert pair.can_login(role, str(second["password"]))
    assert not pair.can_login(role, str(first["password"]))
    # A client that connected with v2's password, then a rollback to v1.
    session = psycopg.connect(pair.server.dsn(role, str(second["password"])), autocommit=True)
    try:
        client = client_of(session)
        back = cli("rollback", NAME, "--reason", "the new password broke a job")
        assert back.code in (0, 4), back.out + back.err
        assert secret(cli) == first
        assert pair.can_login(role, str(first["password"]))
        assert not pair.can_login(role, str(second["password"]))
        # v2's session is still open: its key is in use, and the gate holds.
        assert states(cli)[2] == "previous"
        usage = cli("usage", NAME)
        assert f"old key still in use (last seen 0s ago by {client})" in usage.out, usage.out
        held = cli("run")
        assert held.code in (0, 4), held.out + held.err
        assert states(cli)[2] == "previous"
        session.execute("SELECT 1")  # the gate never cut it off
    finally:
        session.close()
    # A session of the password in force now is not the retired key's: it stays.
    with psycopg.connect(pair.server.dsn(role, str(first["password"])), autocommit=True) as kept:
        done = cli("run")
        assert done.code == 0, done.out + done.err
        assert states(cli)[2] == "retired"
        kept.execute("SELECT 1")
    assert pair.can_login(role, str(first["password"]))
    for run in cli.runs:
        if run.args[:1] != ("get",):
            for doc in (first, second):
                assert str(doc["password"]) not in run.out + run.err


def test_an_emergency_ends_the_sessions_of_the_leaked_password_at_once(
    cli: Cli, pair: Pair
) -> None:
    role = configure(cli, pair)
    assert cli("rotate", NAME, "--wait").code == 0
    first = secret(cli)
    session = psycopg.connect(pair.server.dsn(role, str(first["password"])), autocommit=True)
    try:
        run = cli("emergency", NAME, "--yes", "--reason", "password in a paste")
        assert run.code == 0, run.out + run.err
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")  # terminated by the retirement
    finally:
        session.close()
    second = secret(cli)
    assert second["username"] == role
    assert not pair.can_login(role, str(first["password"]))
    assert pair.can_login(role, str(second["password"]))
    assert states(cli) == {1: "retired", 2: "current"}


@pytest.mark.long  # ~11 s; the alternating pair's crash matrix runs by default
def test_kill_at_every_boundary_then_resume_leaves_the_server_on_the_stores_current(
    cli: Cli, pair: Pair
) -> None:
    from rotatectl.engine import BOUNDARIES

    role = configure(cli, pair, retain="1s")
    assert cli("rotate", NAME, "--wait").code == 0
    for boundary in BOUNDARIES:
        if boundary.startswith("after-destroy"):
            continue  # destroying an old password of one role changes nothing there
        dbflows.kill_at(cli, boundary, "rotate", NAME, "--wait")
        resumed = cli("run")
        assert resumed.code == 0, resumed.out + resumed.err
        current = secret(cli)
        assert current["username"] == role
        assert pair.can_login(role, str(current["password"])), f"resumed after {boundary}"


# -- the issuer itself --------------------------------------------------------------


def single(pair: Pair) -> PostgresSingleRoleIssuer:
    return PostgresSingleRoleIssuer(pair.server.admin_dsn, pair.users[0], where="test")


class TestPostgresSingleRoleIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self, pair: Pair) -> KeyIssuer:
        return single(pair)


def test_a_key_works_from_its_promotion_and_promote_is_idempotent(pair: Pair) -> None:
    issuer, role = single(pair), pair.users[0]
    assert issuer_features(issuer) == {"promote"}
    a = issuer.create(CRED, "v-a", ())
    assert not pair.can_login(role, a.value)  # created, not yet in force
    issuer.promote(CRED, a.issuer_ref, a.value)
    assert pair.can_login(role, a.value)
    b = issuer.create(CRED, "v-b", ())
    issuer.promote(CRED, b.issuer_ref, b.value)
    issuer.promote(CRED, b.issuer_ref, b.value)
    assert pair.can_login(role, b.value) and not pair.can_login(role, a.value)
    # An earlier key's enable does not bring its password back; promoting it does.
    issuer.enable(CRED, a.issuer_ref)
    assert not pair.can_login(role, a.value)
    issuer.promote(CRED, a.issuer_ref, a.value)
    assert pair.can_login(role, a.value) and not pair.can_login(role, b.value)


def test_disabling_an_earlier_key_ends_only_the_sessions_it_opened(pair: Pair) -> None:
    issuer, role = single(pair), pair.users[0]
    a = issuer.create(CRED, "v-a", ())
    issuer.promote(CRED, a.issuer_ref, a.value)
    old = psycopg.connect(pair.server.dsn(role, a.value), autocommit=True)
    b = issuer.create(CRED, "v-b", ())
    issuer.promote(CRED, b.issuer_ref, b.value)
    new = psycopg.connect(pair.server.dsn(role, b.value), autocommit=True)
    try:
        issuer.disable(CRED, a.issuer_ref)
        issuer.disable(CRED, a.issuer_ref)
        with pytest.raises(psycopg.OperationalError):
            old.execute("SELECT 1")
        new.execute("SELECT 1")
        assert pair.can_login(role, b.value)
        # The key in force: NOLOGIN and its sessions ended; enable lets it in again.
        issuer.disable(CRED, b.issuer_ref)
        with pytest.raises(psycopg.OperationalError):
            new.execute("SELECT 1")
        assert not pair.can_login(role, b.value)
        issuer.enable(CRED, b.issuer_ref)
        assert pair.can_login(role, b.value)
    finally:
        old.close()
        new.close()


def test_no_password_reaches_the_servers_statement_log(pair: Pair) -> None:
    issuer = single(pair)
    before = pair.server.log.stat().st_size
    keys = [issuer.create(CRED, f"v-{n}", ()) for n in range(2)]
    for key in keys:
        issuer.promote(CRED, key.issuer_ref, key.value)
    issuer.disable(CRED, keys[0].issuer_ref)
    issuer.delete(CRED, keys[1].issuer_ref)
    with pair.server.log.open(encoding="utf-8", errors="replace") as log:
        log.seek(before)
        text = log.read()
    assert "ALTER ROLE" in text  # the statements were logged, without their secrets
    for key in keys:
        assert keyformat.parse(key.value).secret not in text
