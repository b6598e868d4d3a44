"""examples/zero-downtime: rotations, a store outage and an emergency under live traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.model import UsageStatus, VersionState
from rotatectl.probes.access_log import AccessLogProbe
from rotatectl.stores.local import LocalStore

from ..conftest import Cli

DEMO = Path(__file__).resolve().parents[2] / "examples" / "zero-downtime" / "demo.py"


def _run_demo(cli: Cli, *args: str) -> tuple[dict[str, Any], Path]:
    work = cli.root / "demo"
    summary = cli.root / "summary.json"
    argv = [sys.executable, str(DEMO), "--workdir", str(work), "--json", str(summary), *args]
    proc = subprocess.run(argv, env=cli.env, capture_output=True, text=True, timeout=180)
    cli.record(("examples/zero-downtime/demo.py", *args), proc.returncode, proc.stdout, proc.stderr)
    for log in ("server.log", "cli.log"):
        if (work / log).exists():
            cli.extra_texts.append((work / log).read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout
    return json.loads(summary.read_text()), work


def _assert_zero_downtime(result: dict[str, Any], rotations: int) -> None:
    assert result["passed"], result["checks"]
    assert result["rotations"] == rotations + 2  # + the outage rotation + the emergency
    assert result["threads"] >= 3
    assert result["requests_per_second"] >= 200, "not hundreds of requests per second"
    assert result["requests"] == result["ok"] + result["failures"]
    # Zero failures, except requests made with the compromised key after its revocation.
    assert result["unexpected_failures"] == 0
    assert result["unexpected_refusals"] == 0
    assert set(result["refused_attempts"]) <= {"retired"}
    # Each retired key was refused within one refresh interval (plus the refresh itself).
    assert len(result["retire_lags"]) == rotations + 1
    assert all(0 <= lag <= result["retire_lag_limit"] for lag in result["retire_lags"])
    assert result["retire_lag_limit"] <= result["refresh_interval"] + 0.25
    assert 0 <= result["emergency"]["revocation_lag"] <= result["retire_lag_limit"]
    outage = result["outage"]
    assert outage["stale_reported"] and outage["new_key_unseen_while_down"]
    assert outage["requests_during"] > 0 and outage["failures_during"] == 0
    assert outage["caught_up_after"] <= result["retire_lag_limit"]


def _assert_usage_log_feeds_the_probe(work: Path) -> None:
    store = LocalStore(work / "state.db")
    try:
        versions = store.versions("demo/api")
    finally:
        store.close()
    current = next(v for v in versions if v.state is VersionState.CURRENT)
    retired = [v for v in versions if v.state is VersionState.RETIRED]
    now = datetime.now(UTC)
    seen = AccessLogProbe(work / "usage.jsonl").usage(
        "demo/api", [current.key_id, retired[0].key_id], now - timedelta(minutes=10), now
    )
    assert seen[current.key_id].status is UsageStatus.SEEN
    assert seen[current.key_id].count > 100
    assert seen[retired[0].key_id].status is UsageStatus.SEEN


@pytest.mark.slow
def test_ten_rotations_an_outage_and_an_emergency_without_a_failed_request(cli: Cli) -> None:
    result, work = _run_demo(cli, "--rotations", "10")
    _assert_zero_downtime(result, rotations=10)
    _assert_usage_log_feeds_the_probe(work)


@pytest.mark.slow
def test_the_demo_through_the_cli(cli: Cli) -> None:
    result, work = _run_demo(cli, "--cli", "--rotations", "1", "--outage", "2")
    _assert_zero_downtime(result, rotations=1)
    assert "$ rotatectl emergency demo/api" in (work / "cli.log").read_text()


WINDOW = DEMO.with_name("window.py")


def _run_window(cli: Cli, keep: int) -> tuple[int, dict[str, Any]]:
    summary = cli.root / f"window-{keep}.json"
    argv = [sys.executable, str(WINDOW), "--keep-previous", str(keep), "--json", str(summary)]
    proc = subprocess.run(argv, env=cli.env, capture_output=True, text=True, timeout=180)
    what = ("examples/zero-downtime/window.py", str(keep))
    cli.record(what, proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, json.loads(summary.read_text())


@pytest.mark.slow
def test_slow_refreshing_clients_keep_working_with_a_window_of_three(cli: Cli) -> None:
    """Clients that refresh every 3 s and never retry, while a rotation completes every
    second or so: with keep_previous = 3 no request fails; with 1, requests with the
    key they still hold are refused ("retired") until their next refresh."""
    code, kept = _run_window(cli, 3)
    assert code == 0 and kept["passed"], kept
    assert kept["failures"] == 0 and kept["requests"] > 500
    assert kept["rotations_per_client_refresh"] > 1  # their key outlived rotations
    assert kept["versions"] == {"retired": 3, "previous": 3, "current": 1}
    code, single = _run_window(cli, 1)
    assert code == 1 and not single["passed"]
    assert single["failures"] > 0 and set(single["refused"]) == {"retired"}
    assert single["versions"] == {"retired": 6, "current": 1}
