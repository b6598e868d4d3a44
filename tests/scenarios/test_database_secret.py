"""A PostgreSQL password kept in each remote store, read by the store's ordinary
consumers (issue 19 item 5): the document AWS's database rotation templates use
(``engine``, ``host``, ``port``, ``dbname``, ``username``, ``password``) on moto_server
(read with the AWS caching client) and OpenBao (read with ``bao kv get`` at the client
path). A client that takes its connection settings from the secret
alone connects on every read across three rotations of the alternating pair."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.conftest import Cli
from tests.postgres.conftest import Pair, pair, pg_server  # noqa: F401 - fixtures
from tests.reliability.conftest import AwsBackend, VaultBackend, assert_no_value_leaked

from .conftest import NAME, REMOTE, Backend
from .test_operator_flows import ok


def configure(backend: Backend, db: Pair) -> None:
    users = json.dumps(list(db.users))
    backend.cli.env["ROTATECTL_POSTGRES_DSN"] = db.server.admin_dsn
    (backend.cli.cwd / "rotatectl.toml").write_text(
        f"""[defaults]
store = "{backend.table}"
propagation = "1s"
overlap = "2s"
retain = "1h"

{backend.store_toml(None)}

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "postgres", host = "127.0.0.1", port = {db.server.port}, dbname = "postgres" }}
issuer = {{ type = "postgres", users = {users}, group = "{db.group}" }}
usage = {{ type = "postgres", users = {users} }}
"""
    )


def reader(backend: Backend, cli: Cli) -> Callable[[], dict[str, Any]]:
    """How an ordinary consumer of this store reads the database secret."""
    if isinstance(backend, AwsBackend):
        from aws_secretsmanager_caching import SecretCache, SecretCacheConfig

        cache = SecretCache(
            config=SecretCacheConfig(secret_refresh_interval=1),
            client=backend.server.client("secretsmanager"),
        )
        return lambda: dict(json.loads(cache.get_secret_string(NAME)))
    if isinstance(backend, VaultBackend):
        where = f"secret/{backend.vault.prefix}/{NAME}"

        def bao_read() -> dict[str, Any]:
            read = backend.vault.server.bao("kv", "get", "-format=json", where)
            assert read.returncode == 0, read.stderr
            return dict(json.loads(read.stdout)["data"]["data"])

        return bao_read
    raise AssertionError(f"no ordinary consumer for {backend.kind}")


def connect(doc: dict[str, Any]) -> None:
    """What the consumer does: connect with the secret's settings alone, and query."""
    with psycopg.connect(
        host=str(doc["host"]),
        port=int(doc["port"]),
        dbname=str(doc["dbname"]),
        user=str(doc["username"]),
        password=str(doc["password"]),
        connect_timeout=10,
    ) as conn:
        conn.execute("SELECT 1")


# Locally the consumer is `rotatectl get`: tests/postgres/test_cli.py.
@pytest.mark.parametrize("backend", REMOTE, indirect=True)
def test_the_stores_own_consumers_connect_on_every_read_across_three_rotations(
    cli: Cli,
    backend: Backend,
    pair: Pair,  # noqa: F811 - the fixture
) -> None:
    configure(backend, pair)
    ok(cli("rotate", NAME, "--wait"))
    read = reader(backend, cli)
    connected: list[str] = []
    failures: list[BaseException] = []
    passwords: set[str] = set()
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            try:
                doc = read()
                passwords.add(str(doc["password"]))
                connect(doc)
                connected.append(str(doc["username"]))
            except BaseException as exc:
                failures.append(exc)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            ok(cli("rotate", NAME, "--wait"))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures
    assert len(connected) >= 10 and set(connected) == set(pair.users), connected
    doc = read()
    assert set(doc) == {"engine", "host", "port", "dbname", "username", "password"}
    assert doc["engine"] == "postgres" and doc["port"] == pair.server.port
    assert len(passwords) >= 3  # the consumer followed the rotations
    assert_no_value_leaked(cli, passwords)
