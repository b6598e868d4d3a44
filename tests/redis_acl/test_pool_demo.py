"""``examples/database/redis_pool_demo.py`` as written, against the real Redis server:
client threads run commands across five rotations with no command failed, and the
server refuses every old password after its retirement (issue 19, must show)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import dbflows
from .conftest import Users


@pytest.mark.slow
def test_the_pool_demo_loses_no_command_across_five_rotations(users: Users, tmp_path: Path) -> None:
    dbflows.pool_demo_loses_nothing(
        "redis_pool_demo.py",
        users.server.port,
        users.names,
        {"ROTATECTL_REDIS_URL": users.server.admin_url},
        users.server.password,
        tmp_path,
    )
