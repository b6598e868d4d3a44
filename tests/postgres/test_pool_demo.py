"""``examples/database/pg_pool_demo.py`` as written, against the real PostgreSQL server:
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
        "pg_pool_demo.py",
        pair.server.port,
        pair.users,
        {"ROTATECTL_POSTGRES_DSN": pair.server.admin_dsn},
        pair.server.password,
        tmp_path,
    )
