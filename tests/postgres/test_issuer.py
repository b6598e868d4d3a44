"""The ``postgres`` issuer against a real PostgreSQL server (issue 19): the issuer
contract, the alternation of the pair, what disable/enable/delete do to logins and
sessions, grants shared through the group, and no password in any statement the
server logs."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from rotatectl.errors import IssuerError
from rotatectl.issuers.postgres import PostgresIssuer
from rotatectl.ports import KeyIssuer, issuer_features
from rotatectl.testing.issuer_contract import IssuerContract

from .conftest import Pair

CRED = "db/app"


def make(pair: Pair) -> PostgresIssuer:
    return PostgresIssuer(pair.server.admin_dsn, pair.users, pair.group, where="test")


class TestPostgresIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self, pair: Pair) -> KeyIssuer:
        return make(pair)


def vid() -> str:
    return str(uuid.uuid4())


def test_the_pair_alternates_and_old_references_leave_a_reused_role_alone(pair: Pair) -> None:
    issuer = make(pair)
    assert "keep" in issuer_features(issuer)
    a = issuer.create(CRED, vid(), ())
    assert a.extra["username"] == pair.users[0]
    assert pair.can_login(pair.users[0], a.value)
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    assert b.extra["username"] == pair.users[1]
    assert pair.can_login(pair.users[0], a.value) and pair.can_login(pair.users[1], b.value)
    # a retired: its role cannot log in, b's still can.
    issuer.disable(CRED, a.issuer_ref)
    assert not pair.can_login(pair.users[0], a.value)
    assert pair.can_login(pair.users[1], b.value)
    # The next key takes a's role back (it is the one not in use).
    c = issuer.create(CRED, vid(), (), keep=[b.issuer_ref])
    assert c.extra["username"] == pair.users[0]
    assert pair.can_login(pair.users[0], c.value)
    # a's reference no longer touches the role: destroying a must not break c.
    issuer.disable(CRED, a.issuer_ref)
    issuer.delete(CRED, a.issuer_ref)
    assert pair.can_login(pair.users[0], c.value)
    listed = {k.issuer_ref: k.active for k in issuer.list_keys(CRED) or []}
    assert listed == {c.issuer_ref: True, b.issuer_ref: True}


def test_a_retry_reuses_the_role_tagged_with_its_version(pair: Pair) -> None:
    issuer = make(pair)
    version = vid()
    first = issuer.create(CRED, version, ())
    again = issuer.create(CRED, version, ())
    assert first.extra == again.extra
    assert not pair.can_login(pair.users[0], first.value)  # replaced by the retry's
    assert pair.can_login(pair.users[0], again.value)


def test_both_roles_in_use_is_refused_without_changing_either(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    with pytest.raises(IssuerError, match=r"both roles of .* hold keys that must keep working"):
        issuer.create(CRED, vid(), (), keep=[a.issuer_ref, b.issuer_ref])
    assert pair.can_login(pair.users[0], a.value) and pair.can_login(pair.users[1], b.value)


def test_disable_ends_the_roles_sessions_and_enable_lets_it_in_again(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    session = psycopg.connect(pair.server.dsn(pair.users[0], a.value), autocommit=True)
    try:
        session.execute("SELECT 1")
        issuer.disable(CRED, a.issuer_ref)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    assert not pair.can_login(pair.users[0], a.value)
    issuer.enable(CRED, a.issuer_ref)
    assert pair.can_login(pair.users[0], a.value)
    issuer.delete(CRED, a.issuer_ref)
    assert not pair.can_login(pair.users[0], a.value)
    assert issuer.list_keys(CRED) == []


def test_a_table_granted_to_the_group_after_setup_is_readable_by_both_roles(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    table = sql.Identifier(f"t_{uuid.uuid4().hex[:8]}")
    with pair.server.admin() as admin:
        admin.execute(sql.SQL("CREATE TABLE {} (n int)").format(table))
        admin.execute(sql.SQL("INSERT INTO {} VALUES (7)").format(table))
        admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(pair.group)))
    try:
        for user, key in ((pair.users[0], a), (pair.users[1], b)):
            with psycopg.connect(pair.server.dsn(user, key.value)) as conn:
                assert conn.execute(sql.SQL("SELECT n FROM {}").format(table)).fetchone() == (7,)
    finally:
        with pair.server.admin() as admin:
            admin.execute(sql.SQL("DROP TABLE {}").format(table))


def test_no_password_reaches_the_servers_statement_log(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    issuer.delete(CRED, a.issuer_ref)
    log = pair.server.log.read_text(errors="replace")
    assert f'ALTER ROLE "{pair.users[1]}" WITH LOGIN PASSWORD \'SCRAM-SHA-256$' in log
    for key in (a, b):
        assert key.value not in log


def test_server_errors_are_one_line_naming_the_credential_server_and_step(pair: Pair) -> None:
    down = PostgresIssuer(
        "host=127.0.0.1 port=1 user=x password=hunter2-secret",
        pair.users,
        pair.group,
        where="127.0.0.1:1",
    )
    with pytest.raises(IssuerError) as raised:
        down.create(CRED, vid(), ())
    text = str(raised.value)
    assert text.startswith(f"{CRED}: postgres 127.0.0.1:1: create: ")
    assert "\n" not in text and "hunter2-secret" not in text
    wrong = PostgresIssuer(
        pair.server.dsn("postgres", "wrong-password"), pair.users, pair.group, where="test"
    )
    with pytest.raises(IssuerError, match="password authentication failed"):
        wrong.list_keys(CRED)
