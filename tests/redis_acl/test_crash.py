"""The ``redis`` issuer (alternating) killed at every boundary of a rotation, then
resumed (issue 19): no third user, and no user that is on without the store holding its
password. About 45 s: behind the ``long`` marker (`pytest -m long tests/redis_acl`)."""

from __future__ import annotations

import pytest

from .. import dbflows
from ..conftest import Cli
from .conftest import Users
from .test_cli import NAME, configure


@pytest.mark.long
def test_kill_at_every_boundary_then_resume(cli: Cli, users: Users) -> None:
    configure(cli, users, retain="1s")

    def usable() -> set[str]:
        with users.server.admin() as admin:
            names = [str(n) for n in admin.acl_users() if str(n).startswith(users.names[0])]
            assert set(names) <= set(users.names), f"a third user: {names}"
            return {n for n in names if "on" in admin.acl_getuser(n)["flags"]}

    dbflows.kill_at_every_boundary_then_resume(
        cli, NAME, users.names, usable, users.server.can_auth
    )
