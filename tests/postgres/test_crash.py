"""The ``postgres`` issuer killed at every boundary of a rotation (issue 19): the real
CLI is SIGKILLed where it pauses, then ``run`` resumes. After every resume the pair
still has only its two roles and the group (no third role), and every role that can
log in holds the password of a version the store accepts (no role left with a
password that is not in the store)."""

from __future__ import annotations

import pytest

from .. import dbflows
from ..conftest import Cli
from .conftest import Pair
from .test_cli import NAME, configure


@pytest.mark.slow
def test_kill_at_every_boundary_then_resume(cli: Cli, pair: Pair) -> None:
    configure(cli, pair, retain="1s")

    def usable() -> set[str]:
        with pair.server.admin() as admin:
            rows = admin.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE %s",
                (pair.users[0] + "%",),
            ).fetchall()
        assert {r[0] for r in rows} <= {*pair.users, pair.group}, f"a third role: {rows}"
        return {role for role, login in rows if login}

    dbflows.kill_at_every_boundary_then_resume(cli, NAME, pair.users, usable, pair.can_login)
