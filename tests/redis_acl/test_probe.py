"""The ``redis`` usage probe against a real Redis server (issue 19): an open connection
of the user holding a key is use now, named by its address; a user holding two
passwords makes open connections "unknown"; a key no user accepts any more is not
seen; an unreachable server is a one-line ProbeError."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotatectl.errors import ProbeError
from rotatectl.model import UsageStatus
from rotatectl.probes.redis import RedisClientsProbe

from .conftest import Users
from .test_issuer import CRED, alternating, dual

NOW = datetime.now(UTC)
SINCE = NOW - timedelta(minutes=5)


def probe(users: Users, names: tuple[str, ...] | None = None) -> RedisClientsProbe:
    return RedisClientsProbe(
        users.server.admin_url, names or users.names, tag_key=users.tag_key, where="test"
    )


def address(conn: Any) -> str:
    """The client address the server sees for a redis-py single connection."""
    sock = conn.connection._sock
    assert isinstance(sock, socket.socket)
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def test_alternating_an_open_connection_is_use_now_named_by_its_address(users: Users) -> None:
    issuer = alternating(users)
    a = issuer.create(CRED, str(uuid.uuid4()), ())
    b = issuer.create(CRED, str(uuid.uuid4()), (), keep=[a.issuer_ref])
    quiet = probe(users).usage(CRED, [a.key_id, b.key_id, "gone1234"], SINCE, NOW)
    assert {k: u.status for k, u in quiet.items()} == {
        a.key_id: UsageStatus.NOT_SEEN,
        b.key_id: UsageStatus.NOT_SEEN,
        "gone1234": UsageStatus.NOT_SEEN,
    }
    first = users.server.client(users.names[0], a.value)
    second = users.server.client(users.names[0], a.value)
    try:
        first.get("app:x")
        second.get("app:x")
        seen = probe(users).usage(CRED, [a.key_id, b.key_id], SINCE, NOW)
        old = seen[a.key_id]
        assert old.status is UsageStatus.SEEN and old.last_seen == NOW and old.count == 2
        assert old.clients == tuple(sorted([address(first), address(second)]))
        assert seen[b.key_id].status is UsageStatus.NOT_SEEN
    finally:
        first.close()
        second.close()
    issuer.disable(CRED, a.issuer_ref)
    after = probe(users).usage(CRED, [a.key_id], SINCE, NOW)[a.key_id]
    assert after.status is UsageStatus.NOT_SEEN


def test_dual_password_open_connections_are_unknown_until_one_password_is_left(
    users: Users,
) -> None:
    issuer, user = dual(users), users.names[0]
    a = issuer.create(CRED, str(uuid.uuid4()), ())
    b = issuer.create(CRED, str(uuid.uuid4()), ())
    one = probe(users, (user,))
    assert one.usage(CRED, [a.key_id], SINCE, NOW)[a.key_id].status is UsageStatus.NOT_SEEN
    live = users.server.client(user, a.value)
    try:
        live.get("app:x")
        answer = one.usage(CRED, [a.key_id, b.key_id], SINCE, NOW)
        for key in (a, b):
            usage = answer[key.key_id]
            assert usage.status is UsageStatus.UNKNOWN and usage.clients == ()
            assert address(live) in usage.detail
            assert "Redis does not tell which one a connection used" in usage.detail
    finally:
        live.close()
    issuer.disable(CRED, a.issuer_ref)
    live = users.server.client(user, b.value)
    try:
        live.get("app:x")
        answer = one.usage(CRED, [a.key_id, b.key_id], SINCE, NOW)
        assert answer[a.key_id].status is UsageStatus.NOT_SEEN  # its password is gone
        assert answer[b.key_id].status is UsageStatus.SEEN
        assert answer[b.key_id].clients == (address(live),)
    finally:
        live.close()


def test_an_unreachable_server_is_a_one_line_probe_error(users: Users) -> None:
    down = RedisClientsProbe(
        "redis://default:hunter2-secret@127.0.0.1:1/0", users.names, where="127.0.0.1:1"
    )
    with pytest.raises(ProbeError) as raised:
        down.usage(CRED, ["k1"], SINCE, NOW)
    text = str(raised.value)
    assert text.startswith(f"{CRED}: redis 127.0.0.1:1: usage: ")
    assert "\n" not in text and "hunter2-secret" not in text
