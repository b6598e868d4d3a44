"""``examples/database/mysql_pool_demo.py`` as written, against the real MariaDB server:
a pool of client threads runs queries across five rotations with no query failed, and
the server refuses every old password after its retirement (issue 19, must show)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Pair

DEMO = Path(__file__).resolve().parents[2] / "examples" / "database" / "mysql_pool_demo.py"


@pytest.mark.slow
def test_the_pool_demo_loses_no_query_across_five_rotations(pair: Pair, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    args = ["--port", str(pair.server.port), "--users", *pair.users, "--rotations", "5"]
    run = subprocess.run(
        [sys.executable, str(DEMO), *args, "--json", str(summary)],
        env={**os.environ, "ROTATECTL_MYSQL_DSN": pair.server.admin_url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(run.stdout)  # the figures, shown with `pytest -s`
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(summary.read_text())
    assert figures["failed"] == 0
    assert figures["old_passwords_refused"] == figures["rotations"] == 5
    assert figures["queries"] >= 500, figures
    assert "PASSED" in run.stdout
    assert pair.server.password not in run.stdout + run.stderr
