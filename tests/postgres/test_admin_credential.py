"""The admin connection from another credential rotatectl manages (issue 19 item 1):
``admin_credential = "db/admin"`` reads that credential's current secret from its store
when the issuer first connects; no DSN in the environment."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from rotatectl import keyformat
from rotatectl.model import Version, VersionState
from rotatectl.stores.local import LocalStore

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair

NAME = "db/app"
ADMIN = "db/admin"


def configure(cli: Cli, pair: Pair) -> None:
    users, port = json.dumps(list(pair.users)), pair.server.port
    admin = f'admin_credential = "{ADMIN}"'
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[defaults]
propagation = "0s"
overlap = "0s"
retain = "1h"

[credentials."{ADMIN}"]
format = "json"
field = "password"

[credentials."{NAME}"]
format = "json"
field = "password"
static = {{ engine = "postgres", host = "127.0.0.1", port = {port}, dbname = "postgres" }}
issuer = {{ type = "postgres", users = {users}, group = "{pair.group}", {admin} }}
usage = {{ type = "postgres", users = {users}, {admin} }}
"""
    )


def store_admin_secret(cli: Cli, pair: Pair) -> str:
    """The admin's database secret as the current version of db/admin in the local
    store, as rotatectl would hold it (the document and its key field's fingerprint)."""
    document = json.dumps(
        {
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": pair.server.port,
            "dbname": "postgres",
            "username": "postgres",
            "password": pair.server.password,
        }
    )
    cli.state_dir.mkdir(parents=True, exist_ok=True)
    store = LocalStore(cli.state_dir / "state.db")
    try:
        now = datetime.now(UTC)
        version = Version(
            str(uuid.uuid4()),
            1,
            "adminkey",
            keyformat.value_fingerprint(pair.server.password),
            VersionState.PENDING,
            now,
            field="password",
        )
        store.publish(ADMIN, version, document)
        store.promote(ADMIN, version.version_id, None, now)
    finally:
        store.close()
    return document


def test_the_admin_connection_comes_from_a_managed_credential(cli: Cli, pair: Pair) -> None:
    cli.env.pop("ROTATECTL_POSTGRES_DSN", None)
    configure(cli, pair)
    store_admin_secret(cli, pair)
    assert cli("check").code == 0
    dbflows.rotations_alternate_and_retire_each_old_password(
        cli,
        NAME,
        pair.users,
        {"engine": "postgres", "host": "127.0.0.1", "port": pair.server.port, "dbname": "postgres"},
        pair.can_login,
        rotations=2,
    )
    for done in cli.runs:
        assert pair.server.password not in done.out + done.err


def test_an_admin_credential_with_no_value_is_one_line(cli: Cli, pair: Pair) -> None:
    cli.env.pop("ROTATECTL_POSTGRES_DSN", None)
    configure(cli, pair)
    run = cli("rotate", NAME)
    assert run.code != 0
    assert run.err.count("\n") == 1 and ADMIN in run.err, run.err
