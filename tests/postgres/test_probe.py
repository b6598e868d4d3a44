"""The ``postgres`` usage probe against the real server: open sessions of the role that
holds a key (with their clients), and connections in the server's connection log
(``log_connections``) for clients that connect now and then."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from rotatectl.errors import ProbeError
from rotatectl.issuers.postgres import PostgresIssuer
from rotatectl.model import UsageStatus
from rotatectl.probes.postgres import PostgresSessionsProbe

from .conftest import Pair

CRED = "db/app"


def keys(pair: Pair) -> tuple[PostgresIssuer, list[tuple[str, str, str]]]:
    """Two keys, one per role: (key id, username, password) each."""
    issuer = PostgresIssuer(pair.server.admin_dsn, pair.users, pair.group)
    a = issuer.create(CRED, str(uuid.uuid4()), ())
    b = issuer.create(CRED, str(uuid.uuid4()), (), keep=[a.issuer_ref])
    return issuer, [(k.key_id, k.extra["username"], k.value) for k in (a, b)]


def test_an_open_session_is_seen_with_its_client_and_a_closed_one_is_not(pair: Pair) -> None:
    _, made = keys(pair)
    probe = PostgresSessionsProbe(pair.server.admin_dsn, pair.users)
    now = datetime.now(UTC)
    with psycopg.connect(pair.server.dsn(made[0][1], made[0][2])) as session:
        session.execute("SELECT 1")
        found = probe.usage(CRED, [made[0][0], made[1][0], "nokeyid0"], now - timedelta(1), now)
    a, b, gone = (found[k] for k in (made[0][0], made[1][0], "nokeyid0"))
    assert a.status is UsageStatus.SEEN and a.count == 1 and a.last_seen == now
    assert len(a.clients) == 1 and a.clients[0].startswith("127.0.0.1:")
    assert b.status is UsageStatus.NOT_SEEN and b.detail.startswith("no session of role")
    assert gone.status is UsageStatus.NOT_SEEN and gone.detail == "no role holds this key any more"
    after = probe.usage(CRED, [made[0][0]], now, datetime.now(UTC))
    assert after[made[0][0]].status is UsageStatus.NOT_SEEN


def test_the_connection_log_shows_a_client_that_came_and_went(pair: Pair) -> None:
    _, made = keys(pair)
    probe = PostgresSessionsProbe(
        pair.server.admin_dsn, pair.users, connection_log=str(pair.server.log)
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    with psycopg.connect(pair.server.dsn(made[1][1], made[1][2])) as brief:
        brief.execute("SELECT 1")
    time.sleep(0.2)  # the server writes the log line as it authorizes
    now = datetime.now(UTC)
    found = probe.usage(CRED, [made[0][0], made[1][0]], before, now)
    b = found[made[1][0]]
    assert b.status is UsageStatus.SEEN, b
    assert b.last_seen is not None and before <= b.last_seen <= now
    assert "(connection log)" in b.detail
    assert found[made[0][0]].status is UsageStatus.NOT_SEEN
    # Outside the window it does not count.
    assert probe.usage(CRED, [made[1][0]], now, now)[made[1][0]].status is UsageStatus.NOT_SEEN


def test_a_missing_connection_log_is_an_error_not_silence(pair: Pair, tmp_path: Path) -> None:
    _, made = keys(pair)
    probe = PostgresSessionsProbe(
        pair.server.admin_dsn, pair.users, connection_log=str(tmp_path / "nope.log")
    )
    now = datetime.now(UTC)
    with pytest.raises(ProbeError, match=r"connection log .*nope\.log: no such file"):
        probe.usage(CRED, [made[0][0]], now, now)


def test_an_unreachable_server_is_a_probe_error(pair: Pair) -> None:
    probe = PostgresSessionsProbe("host=127.0.0.1 port=1 user=x password=pw-secret-x", pair.users)
    now = datetime.now(UTC)
    with pytest.raises(ProbeError) as raised:
        probe.usage(CRED, ["k"], now, now)
    assert "pw-secret-x" not in str(raised.value) and "\n" not in str(raised.value)
