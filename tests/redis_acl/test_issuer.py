"""The ``redis`` issuer against a real Redis server (issue 19): the issuer contract for
both strategies, the alternation of the pair, what disable/enable/delete do to logins
and connections, the rules shared by both users, dual passwords, the ACL file kept up
to date, no password on the wire or in the server's logs, and one-line errors."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from rotatectl.errors import ConfigError, IssuerError
from rotatectl.issuers.redis import AlternatingUsers, DualPassword, RedisIssuer
from rotatectl.ports import KeyIssuer, issuer_features
from rotatectl.redisacl import password_hash
from rotatectl.registry import AdapterContext
from rotatectl.testing.issuer_contract import IssuerContract

from .conftest import RedisServer, Users

CRED = "cache/app"
RULES = ("~app:*", "+@read", "+@write", "-@dangerous")  # +@write alone allows FLUSHALL


def alternating(users: Users, **kw: Any) -> AlternatingUsers:
    return AlternatingUsers(
        users.server.admin_url, users.names, RULES, tag_key=users.tag_key, where="test", **kw
    )


def dual(users: Users, **kw: Any) -> DualPassword:
    return DualPassword(
        users.server.admin_url, users.names[:1], RULES, tag_key=users.tag_key, where="test", **kw
    )


class TestAlternatingContract(IssuerContract):
    @pytest.fixture
    def issuer(self, users: Users) -> KeyIssuer:
        return alternating(users)


class TestDualPasswordContract(IssuerContract):
    @pytest.fixture
    def issuer(self, users: Users) -> KeyIssuer:
        return dual(users)


def vid() -> str:
    return str(uuid.uuid4())


def test_the_pair_alternates_and_old_references_leave_a_reused_user_alone(users: Users) -> None:
    issuer, server, (first, second) = alternating(users), users.server, users.names
    assert "keep" in issuer_features(issuer)
    a = issuer.create(CRED, vid(), ())
    assert a.extra["username"] == first
    assert server.can_auth(first, a.value)
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    assert b.extra["username"] == second
    assert server.can_auth(first, a.value) and server.can_auth(second, b.value)
    # a retired: its user is off, b's still works.
    issuer.disable(CRED, a.issuer_ref)
    assert not server.can_auth(first, a.value)
    assert server.can_auth(second, b.value)
    # The next key takes a's user back (it is the one not in use).
    c = issuer.create(CRED, vid(), (), keep=[b.issuer_ref])
    assert c.extra["username"] == first
    assert server.can_auth(first, c.value)
    # a's reference no longer touches the user: destroying a must not break c.
    issuer.disable(CRED, a.issuer_ref)
    issuer.delete(CRED, a.issuer_ref)
    assert server.can_auth(first, c.value)
    listed = {k.issuer_ref: k.active for k in issuer.list_keys(CRED) or []}
    assert listed == {c.issuer_ref: True, b.issuer_ref: True}


def test_a_retry_reuses_the_user_tagged_with_its_version(users: Users) -> None:
    issuer = alternating(users)
    version = vid()
    first = issuer.create(CRED, version, ())
    again = issuer.create(CRED, version, ())
    assert first.extra == again.extra
    assert not users.server.can_auth(users.names[0], first.value)  # replaced by the retry's
    assert users.server.can_auth(users.names[0], again.value)


def test_both_users_in_use_is_refused_without_changing_either(users: Users) -> None:
    issuer = alternating(users)
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    with pytest.raises(IssuerError, match=r"both users of .* hold keys that must keep working"):
        issuer.create(CRED, vid(), (), keep=[a.issuer_ref, b.issuer_ref])
    assert users.server.can_auth(users.names[0], a.value)
    assert users.server.can_auth(users.names[1], b.value)


def test_disable_kills_a_live_connection_enable_lets_it_in_and_delete_leaves_no_password(
    users: Users,
) -> None:
    issuer, server, user = alternating(users), users.server, users.names[0]
    a = issuer.create(CRED, vid(), ())
    live = server.client(user, a.value)
    try:
        live.set("app:x", "1")
        issuer.disable(CRED, a.issuer_ref)
        with pytest.raises(redis.ConnectionError):
            live.get("app:x")  # closed by the server
    finally:
        live.close()
    assert not server.can_auth(user, a.value)
    assert users.acl(user)["flags"] == ["off"]
    issuer.enable(CRED, a.issuer_ref)
    assert server.can_auth(user, a.value)
    issuer.delete(CRED, a.issuer_ref)
    assert not server.can_auth(user, a.value)
    assert users.acl(user)["passwords"] == []
    assert issuer.list_keys(CRED) == []


def test_the_rules_are_applied_to_both_users_on_every_create(users: Users) -> None:
    issuer, server, (first, second) = alternating(users), users.server, users.names
    a = issuer.create(CRED, vid(), ())
    # Someone widens the idle user by hand: the next create puts the rules back.
    with server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", second, "~*", "+@all", "&*")
    b = issuer.create(CRED, vid(), (), keep=[a.issuer_ref])
    one, two = users.acl(first), users.acl(second)
    for field in ("keys", "channels", "commands", "categories"):
        assert one[field] == two[field], field
    assert one["keys"] == ["~app:*"] and one["channels"] == []
    for user, key in ((first, a), (second, b)):
        conn = server.client(user, key.value)
        try:
            conn.set("app:k", "v")
            assert conn.get("app:k") == "v"
            with pytest.raises(redis.exceptions.NoPermissionError):
                conn.set("other:k", "v")
            with pytest.raises(redis.exceptions.NoPermissionError):
                conn.flushall()
            with pytest.raises(redis.exceptions.NoPermissionError):
                conn.config_get("maxmemory")
        finally:
            conn.close()


def test_dual_password_both_work_in_the_overlap_and_each_goes_alone(users: Users) -> None:
    issuer, server, user = dual(users), users.server, users.names[0]
    assert issuer_features(issuer) == frozenset()
    a = issuer.create(CRED, vid(), ())
    b = issuer.create(CRED, vid(), ())
    assert a.extra == b.extra == {"username": user}
    assert server.can_auth(user, a.value) and server.can_auth(user, b.value)
    assert sorted(users.acl(user)["passwords"]) == sorted(
        [password_hash(a.value), password_hash(b.value)]
    )
    live = server.client(user, b.value)
    try:
        issuer.disable(CRED, a.issuer_ref)
        # Every connection of the user ends: Redis cannot tell which password it used.
        with pytest.raises(redis.ConnectionError):
            live.get("app:x")
    finally:
        live.close()
    assert not server.can_auth(user, a.value)
    assert server.can_auth(user, b.value)
    issuer.enable(CRED, a.issuer_ref)  # from the hash alone
    assert server.can_auth(user, a.value)
    issuer.disable(CRED, a.issuer_ref)
    issuer.delete(CRED, a.issuer_ref)
    assert not server.can_auth(user, a.value) and server.can_auth(user, b.value)
    assert users.acl(user)["passwords"] == [password_hash(b.value)]
    assert [(k.issuer_ref, k.active) for k in issuer.list_keys(CRED) or []] == [
        (b.issuer_ref, True)
    ]


def test_changes_are_saved_to_the_acl_file(users: Users) -> None:
    issuer, server, user = alternating(users), users.server, users.names[0]
    a = issuer.create(CRED, vid(), ())
    assert f"user {user} on #{password_hash(a.value)} " in (server.root / "users.acl").read_text()
    with server.admin() as admin:
        admin.execute_command("ACL", "LOAD")  # what a restart reads
    assert server.can_auth(user, a.value)


class Recording(redis.Connection):
    """A connection that keeps every byte it sends."""

    sent: list[bytes] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, bytes | str) else list(command)
        Recording.sent.extend(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        super().send_packed_command(command, check_health)


def test_no_password_on_the_wire_in_monitor_slowlog_acl_log_or_acl_file(users: Users) -> None:
    """The wire record is the decisive check: Redis 7 itself redacts ACL SETUSER's
    arguments in SLOWLOG and leaves ACL commands out of MONITOR, so those two only show
    that nothing else (a tag, an error) carries a password."""
    server = users.server
    Recording.sent = []

    def connect(url: str) -> Any:
        return redis.Redis.from_url(url, decode_responses=True, connection_class=Recording)

    seen: list[str] = []
    ready = threading.Event()

    def monitor() -> None:
        with server.admin() as admin, admin.monitor() as feed:
            ready.set()
            for entry in feed.listen():
                seen.append(entry["command"])
                if "rotatectl-test-done" in entry["command"]:
                    return

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    assert ready.wait(10)
    keys = []
    for issuer in (
        alternating(users, connect=connect),
        DualPassword(
            server.admin_url, users.names[1:], RULES, tag_key=users.tag_key, connect=connect
        ),
    ):
        a = issuer.create(CRED, vid(), ())
        b = issuer.create(CRED, vid(), ())
        issuer.disable(CRED, a.issuer_ref)
        issuer.enable(CRED, a.issuer_ref)
        issuer.delete(CRED, a.issuer_ref)
        keys += [a, b]
    server.can_auth(users.names[0], "wrong-" + keys[1].value[:5])  # an ACL LOG entry
    with server.admin() as admin:
        admin.echo("rotatectl-test-done")
        watcher.join(10)
        slowlog = repr(admin.slowlog_get(100000))
        acl_log = repr(admin.acl_log())
    wire = b"".join(Recording.sent)
    acl_file = (server.root / "users.acl").read_text()
    assert f"#{password_hash(keys[1].value)}".encode() in wire  # the hash is what was sent
    assert any(users.tag_key in line for line in seen)  # MONITOR saw the issuer's commands
    for key in keys:
        assert key.value.encode() not in wire
        assert key.value not in slowlog and key.value not in acl_log
        assert key.value not in acl_file and not any(key.value in line for line in seen)


def test_server_errors_are_one_line_naming_the_credential_server_and_step(
    users: Users, redis_server: RedisServer
) -> None:
    down = AlternatingUsers(
        "redis://default:hunter2-secret@127.0.0.1:1/0", users.names, RULES, where="127.0.0.1:1"
    )
    with pytest.raises(IssuerError) as raised:
        down.create(CRED, vid(), ())
    text = str(raised.value)
    assert text.startswith(f"{CRED}: redis 127.0.0.1:1: create: ")
    assert "\n" not in text and "hunter2-secret" not in text
    url = f"redis://default:wrong-password@127.0.0.1:{redis_server.port}/0"
    wrong = AlternatingUsers(url, users.names, RULES, where="test")
    with pytest.raises(IssuerError, match="invalid username-password pair") as raised:
        wrong.list_keys(CRED)
    assert "wrong-password" not in str(raised.value)
    # A rule the server refuses: one line, and nothing changed.
    bad = AlternatingUsers(
        redis_server.admin_url,
        users.names,
        ("+no-such-command",),
        tag_key=users.tag_key,
        where="test",
    )
    with pytest.raises(IssuerError, match=r"^cache/app: redis test: create: .*no-such-command"):
        bad.create(CRED, vid(), ())
    assert users.acl(users.names[0]) is None
    with redis_server.admin() as admin:
        assert not admin.exists(users.tag_key)


def ctx(tmp_path: Path, **env: str) -> AdapterContext:
    return AdapterContext("credentials.c.issuer", tmp_path, tmp_path, env=env)


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"users": ["a", "b"]}, "rules", "expected the users' ACL rules"),
        ({"users": ["a", "b"], "rules": "~* >pw"}, "rules", "no password or on/off rules"),
        ({"users": ["a"], "rules": "+@all"}, "users", "expected 2 distinct ACL user name"),
        ({"users": ["a", "default"], "rules": "+@all"}, "users", "(not 'default')"),
        (
            {"users": ["a", "b"], "rules": "+@all", "strategy": "dual-password"},
            "users",
            "expected 1 distinct",
        ),
        ({"users": ["a", "b"], "rules": "+@all", "strategy": "x"}, "strategy", "'alternating'"),
        ({"users": ["a", "b"], "rules": "+@all", "persist": "x"}, "persist", "expected one of"),
        (
            {"users": ["a", "b"], "rules": "+@all", "admin_url_env": "NOPE"},
            "admin_url_env",
            "$NOPE is not set",
        ),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, settings: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        RedisIssuer.from_config(settings, ctx(tmp_path, ROTATECTL_REDIS_URL="redis://h:1/0"))
    assert f"[credentials.c.issuer] {key}: " in str(raised.value)
    assert message in str(raised.value)


def test_config_builds_the_strategy(tmp_path: Path) -> None:
    env = {"REDIS_ADMIN": "redis://default:s3cret@cache.internal:6380/0"}
    built = RedisIssuer.from_config(
        {
            "users": ["app"],
            "rules": ["~app:*", "+@read"],
            "strategy": "dual-password",
            "admin_url_env": "REDIS_ADMIN",
        },
        ctx(tmp_path, **env),
    )
    assert isinstance(built, DualPassword) and built.where == "cache.internal:6380"
    assert "s3cret" not in repr(built)
    default = RedisIssuer.from_config(
        {"users": ["app", "app_b"], "rules": "~app:* +@read"},
        ctx(tmp_path, ROTATECTL_REDIS_URL="redis://h:1/0"),
    )
    assert isinstance(default, AlternatingUsers) and default.rules == ("~app:*", "+@read")
    with pytest.raises(ConfigError, match="does not hold a redis://"):
        RedisIssuer.from_config(
            {"users": ["app", "app_b"], "rules": "+@read"},
            ctx(tmp_path, ROTATECTL_REDIS_URL="http://h/"),
        )
