"""The ``mysql`` issuer killed at every boundary of a rotation, then resumed (issue 19):
no third user, and no user that can log in with a password the store does not hold.
About 45 s: behind the ``long`` marker (`pytest -m long tests/mariadb`)."""

from __future__ import annotations

import json

import pytest

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair
from .test_cli import NAME, configure


@pytest.mark.long
def test_kill_at_every_boundary_then_resume(cli: Cli, pair: Pair) -> None:
    configure(cli, pair, retain="1s")

    def usable() -> set[str]:
        with pair.server.admin() as admin, admin.cursor() as cur:
            cur.execute(
                "SELECT User, Priv FROM mysql.global_priv WHERE User LIKE %s",
                (pair.users[0] + "%",),
            )
            rows = [(user, json.loads(priv)) for user, priv in cur.fetchall()]
        assert {r[0] for r in rows} <= {*pair.users, pair.group}, f"a third user: {rows}"
        return {u for u, priv in rows if u in pair.users and not priv.get("account_locked")}

    dbflows.kill_at_every_boundary_then_resume(cli, NAME, pair.users, usable, pair.can_login)
