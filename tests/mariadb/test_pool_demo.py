"""``examples/database/mysql_pool_demo.py`` as written, against the real MariaDB server:
a pool of client threads runs queries across five rotations with no query failed, and
the server refuses every old password after its retirement (issue 19, must show)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import dbflows
from .conftest import Pair


@pytest.mark.slow
def test_the_pool_demo_loses_no_query_across_five_rotations(pair: Pair, tmp_path: Path) -> None:
    dbflows.pool_demo_loses_nothing(
        "mysql_pool_demo.py",
        pair.server.port,
        pair.users,
        {"ROTATECTL_MYSQL_DSN": pair.server.admin_url},
        pair.server.password,
        tmp_path,
    )
