"""The ``mysql`` issuer and probe against a real MariaDB server (issue 19): the issuer
contract, the alternation of the pair, what disable/enable/delete do to logins and
sessions, grants shared through the role, no password in the server's general log,
errors as one line, the dual-password strategy refused on MariaDB, and the probe."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pymysql
import pytest

from rotatectl.errors import ConfigError, IssuerError, ProbeError
from rotatectl.extras import MissingExtraError
from rotatectl.issuers.mysql import MySQLIssuer
from rotatectl.model import UsageStatus
from rotatectl.mysql import parse_url
from rotatectl.ports import KeyIssuer, issuer_features
from rotatectl.probes.mysql import MySQLSessionsProbe
from rotatectl.registry import AdapterContext
from rotatectl.testing.issuer_contract import IssuerContract

from .conftest import Pair

CRED = "db/app"


def make(pair: Pair, **kwargs: str) -> MySQLIssuer:
    return MySQLIssuer(
        parse_url(pair.server.admin_url), pair.users, pair.group, where="test", **kwargs
    )


class TestMySQLIssuerContract(IssuerContract):
    @pytest.fixture
    def issuer(self, pair: Pair) -> KeyIssuer:
        return make(pair)


def vid() -> str:
    return str(uuid.uuid4())


def test_the_pair_alternates_and_old_references_leave_a_reused_user_alone(pair: Pair) -> None:
    issuer = make(pair)
    assert "keep" in issuer_features(issuer)
    a = issuer.create(CRED, vid(), ())
    assert a.extra["username"] == pair.users[0]
    assert a.value.startswith("my_")
    assert pair.can_login(pair.users[0], a.value)
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    assert b.extra["username"] == pair.users[1]
    assert pair.can_login(pair.users[0], a.value) and pair.can_login(pair.users[1], b.value)
    # a retired: its user cannot log in, b's still can.
    issuer.disable(CRED, a.issuer_ref)
    assert not pair.can_login(pair.users[0], a.value)
    assert pair.can_login(pair.users[1], b.value)
    # The next key takes a's user back (it is the one not in use).
    c = issuer.create(CRED, vid(), (), keep=[b.issuer_ref])
    assert c.extra["username"] == pair.users[0]
    assert pair.can_login(pair.users[0], c.value)
    # a's reference no longer touches the user: destroying a must not break c.
    issuer.disable(CRED, a.issuer_ref)
    issuer.delete(CRED, a.issuer_ref)
    assert pair.can_login(pair.users[0], c.value)
    listed = {k.issuer_ref: k.active for k in issuer.list_keys(CRED) or []}
    assert listed == {c.issuer_ref: True, b.issuer_ref: True}


def test_a_retry_reuses_the_user_tagged_with_its_version(pair: Pair) -> None:
    issuer = make(pair)
    version = vid()
    first = issuer.create(CRED, version, ())
    again = issuer.create(CRED, version, ())
    assert first.extra == again.extra == {"username": pair.users[0]}
    assert not pair.can_login(pair.users[0], first.value)  # replaced by the retry's
    assert pair.can_login(pair.users[0], again.value)


def test_both_users_in_use_is_refused_without_changing_either(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    with pytest.raises(IssuerError, match=r"both users of .* hold keys that must keep working"):
        issuer.create(CRED, vid(), (), keep=[a.issuer_ref, b.issuer_ref])
    assert pair.can_login(pair.users[0], a.value) and pair.can_login(pair.users[1], b.value)


def test_disable_kills_the_users_sessions_and_locks_it_and_enable_lets_it_in(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    session = pair.server.connect(pair.users[0], a.value)
    try:
        with session.cursor() as cur:
            cur.execute("SELECT 1")
        issuer.disable(CRED, a.issuer_ref)
        with pytest.raises(pymysql.err.OperationalError), session.cursor() as cur:
            cur.execute("SELECT 1")  # killed
    finally:
        session.close()
    with pytest.raises(pymysql.err.OperationalError, match="locked"):
        pair.server.connect(pair.users[0], a.value)
    issuer.enable(CRED, a.issuer_ref)
    assert pair.can_login(pair.users[0], a.value)
    issuer.delete(CRED, a.issuer_ref)
    assert not pair.can_login(pair.users[0], a.value)
    assert issuer.list_keys(CRED) == []


def test_a_table_granted_to_the_role_after_setup_is_readable_by_both_users(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    db = f"t_{uuid.uuid4().hex[:8]}"
    with pair.server.admin() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (n int)")
        cur.execute(f"INSERT INTO {db}.t VALUES (7)")
        cur.execute(f"GRANT SELECT ON {db}.t TO `{pair.group}`")
    try:
        for user, key in ((pair.users[0], a), (pair.users[1], b)):
            with pair.server.connect(user, key.value) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT n FROM {db}.t")  # the default role: no SET ROLE
                assert cur.fetchone() == (7,)
    finally:
        with pair.server.admin() as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {db}")


def test_no_password_reaches_the_servers_general_log(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    issuer.disable(CRED, a.issuer_ref)
    issuer.delete(CRED, a.issuer_ref)
    # The control: MariaDB logs IDENTIFIED BY '<password>' as sent (no rewriting).
    canary = f"canary-{uuid.uuid4().hex}"
    with pair.server.admin() as admin, admin.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (f"c_{canary[7:15]}", canary))
        cur.execute("DROP USER %s@'%%'", (f"c_{canary[7:15]}",))
    log = _read_until(pair.server.general_log, canary)
    assert f"ALTER USER '{pair.users[1]}'@'%' IDENTIFIED BY PASSWORD '*" in log
    for key in (a, b):
        assert key.value not in log


def _read_until(path: Path, text: str) -> str:
    """The general log once it holds ``text`` (the server writes it as it goes)."""
    for _ in range(50):
        log = path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.1)
    pytest.fail(f"{text!r} never reached the general log")


def test_server_errors_are_one_line_naming_the_credential_server_and_step(pair: Pair) -> None:
    down = MySQLIssuer(parse_url("mysql://x:hunter2-secret@127.0.0.1:1/"), pair.users, pair.group)
    with pytest.raises(IssuerError) as raised:
        down.create(CRED, vid(), ())
    text = str(raised.value)
    assert text.startswith(f"{CRED}: mysql 127.0.0.1:1: create: Can't connect"), text
    assert "\n" not in text and "hunter2-secret" not in text
    url = f"mysql://root:wrong-password@127.0.0.1:{pair.server.port}/"
    wrong = MySQLIssuer(parse_url(url), pair.users, pair.group)
    with pytest.raises(IssuerError) as raised:
        wrong.list_keys(CRED)
    text = str(raised.value)
    assert text.startswith(f"{CRED}: mysql 127.0.0.1:{pair.server.port}: list: Access denied")
    assert "\n" not in text and "wrong-password" not in text


def test_dual_password_is_refused_on_mariadb_at_first_use(pair: Pair) -> None:
    issuer = MySQLIssuer(
        parse_url(pair.server.admin_url), pair.users[:1], pair.group, strategy="dual-password"
    )
    with pytest.raises(IssuerError) as raised:
        issuer.create(CRED, vid(), ())
    assert str(raised.value) == (
        f"{CRED}: mysql 127.0.0.1:{pair.server.port}: create: strategy 'dual-password' needs "
        "MySQL 8.0.14 or later (RETAIN CURRENT PASSWORD); this server is MariaDB "
        f"{'.'.join(pair.server.version.split('-')[0].split('.')[:3])}: use strategy "
        "'alternating'"
    )
    with pair.server.admin() as admin, admin.cursor() as cur:
        cur.execute("SELECT User FROM mysql.user WHERE User = %s", (pair.users[0],))
        assert cur.fetchall() == ()  # nothing was created


def test_the_admin_url_comes_from_the_environment_and_is_never_quoted(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctx(env: dict[str, str]) -> AdapterContext:
        return AdapterContext("credentials.db.issuer", tmp_path, tmp_path, env=env)

    settings = {"users": list(pair.users), "group": pair.group}
    built = MySQLIssuer.from_config(settings, ctx({"ROTATECTL_MYSQL_DSN": pair.server.admin_url}))
    assert pair.server.password not in repr(built) + repr(built._admin)
    assert built.where == f"127.0.0.1:{pair.server.port}" and built.prefix == "my"
    with pytest.raises(ConfigError, match=r"\$ROTATECTL_MYSQL_DSN is not set"):
        MySQLIssuer.from_config(settings, ctx({}))
    bad = "postgres://root:s3cret-pw@db/"
    with pytest.raises(ConfigError) as raised:
        MySQLIssuer.from_config(settings, ctx({"ROTATECTL_MYSQL_DSN": bad}))
    assert "s3cret-pw" not in str(raised.value)
    with pytest.raises(ConfigError, match="one user name with strategy 'dual-password'"):
        MySQLIssuer.from_config(
            {**settings, "strategy": "dual-password"},
            ctx({"ROTATECTL_MYSQL_DSN": pair.server.admin_url}),
        )
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as without the extra
    with pytest.raises(MissingExtraError, match=r"pip install 'rotatectl\[mysql\]'"):
        MySQLIssuer.from_config(settings, ctx({"ROTATECTL_MYSQL_DSN": pair.server.admin_url}))


def test_the_probe_sees_the_sessions_of_the_user_holding_each_key(pair: Pair) -> None:
    issuer = make(pair)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    probe = MySQLSessionsProbe(parse_url(pair.server.admin_url), pair.users)
    now = datetime.now(UTC)
    session = pair.server.connect(pair.users[0], a.value)
    try:
        client = "{}:{}".format(*session._sock.getsockname()[:2])
        found = probe.usage(CRED, [a.key_id, b.key_id, "gone"], now, now)
    finally:
        session.close()
    assert found[a.key_id].status is UsageStatus.SEEN
    assert found[a.key_id].clients == (client,) and found[a.key_id].last_seen == now
    assert found[b.key_id].status is UsageStatus.NOT_SEEN
    assert found["gone"].status is UsageStatus.NOT_SEEN
    down = MySQLSessionsProbe(parse_url("mysql://x:pw@127.0.0.1:1/"), pair.users)
    with pytest.raises(ProbeError, match=rf"^{CRED}: mysql 127.0.0.1:1: usage: "):
        down.usage(CRED, [a.key_id], now, now)


def test_an_admin_with_only_the_documented_privileges_suffices(pair: Pair) -> None:
    admin = f"adm_{uuid.uuid4().hex[:8]}"
    with pair.server.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'admin-pw'", (admin,))
        # The README's list: SET DEFAULT ROLE ... FOR another user writes mysql.*.
        for grant in (
            "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s@'%%'",
            "GRANT SELECT, UPDATE ON mysql.* TO %s@'%%'",
            "GRANT ALL ON rotatectl.* TO %s@'%%'",
        ):
            cur.execute(grant, (admin,))
    try:
        url = parse_url(f"mysql://{admin}:admin-pw@127.0.0.1:{pair.server.port}/")
        issuer = MySQLIssuer(url, pair.users, pair.group)
        a = issuer.create(CRED, vid(), ())
        session = pair.server.connect(pair.users[0], a.value)
        try:
            b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
            now = datetime.now(UTC)
            seen = MySQLSessionsProbe(url, pair.users).usage(CRED, [a.key_id], now, now)
            assert seen[a.key_id].status is UsageStatus.SEEN
            issuer.disable(CRED, a.issuer_ref)  # kills a session of another user
            with pytest.raises(pymysql.err.OperationalError), session.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            session.close()
        issuer.delete(CRED, a.issuer_ref)
        assert pair.can_login(pair.users[1], b.value)
        assert not pair.can_login(pair.users[0], a.value)
    finally:
        with pair.server.admin() as conn, conn.cursor() as cur:
            cur.execute("DROP USER %s@'%%'", (admin,))
