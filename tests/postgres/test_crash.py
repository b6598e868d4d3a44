"""The ``postgres`` issuer killed at every boundary of a rotation (issue 19): the real
CLI is SIGKILLed where it pauses, then ``run`` resumes. After every resume the pair
still has exactly its two roles and the group (no third role), and every role that
can log in holds the password of a version the store accepts (no role left with a
password that is not in the store)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from rotatectl.engine import BOUNDARIES

from ..conftest import Cli
from .conftest import Pair
from .test_cli import NAME, configure

DESTROY = tuple(b for b in BOUNDARIES if b.startswith("after-destroy"))


def kill_at(cli: Cli, boundary: str, *args: str, timeout: float = 60) -> None:
    """Run ``rotatectl ARGS`` until it pauses at ``boundary``, then SIGKILL it."""
    marker = cli.root / f"paused-{time.monotonic_ns()}"
    env = {"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)}
    proc = cli.popen(*args, env=env)
    deadline = time.monotonic() + timeout
    while not (marker.exists() and marker.read_text().endswith("\n")):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    reached = marker.exists() and marker.read_text().endswith("\n")
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    cli.record((*args, f"killed at {boundary}"), proc.returncode, out, err)
    assert reached, f"{args} did not reach {boundary}:\n{out}{err}"


def accepted_passwords(cli: Cli) -> dict[str, str]:
    """username -> password of every version the store accepts (read with `get -V`)."""
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    found: dict[str, str] = {}
    for v in status["versions"]:
        if v["state"] in ("pending", "current", "previous"):
            doc = json.loads(cli("get", NAME, "-V", str(v["number"])).out)
            found[doc["username"]] = doc["password"]
    return found


def check_pair(cli: Cli, pair: Pair, when: str) -> None:
    with pair.server.admin() as admin:
        rows = admin.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE %s",
            (pair.users[0] + "%",),
        ).fetchall()
    assert {r[0] for r in rows} <= {*pair.users, pair.group}, f"{when}: a third role: {rows}"
    accepted = accepted_passwords(cli)
    for role, login in rows:
        if role == pair.group:
            assert not login, f"{when}: the group can log in"
        elif login:
            assert role in accepted, f"{when}: {role} can log in, but no accepted version is it"
            assert pair.can_login(role, accepted[role]), (
                f"{when}: {role}'s password is not the store's"
            )
    for role, password in accepted.items():
        assert pair.can_login(role, password), f"{when}: accepted {role} cannot log in"


@pytest.mark.slow
def test_kill_at_every_boundary_then_resume(cli: Cli, pair: Pair) -> None:
    configure(cli, pair, retain="1s")
    assert cli("rotate", NAME, "--wait").code == 0
    for boundary in BOUNDARIES:
        if boundary in DESTROY:
            # A key retired longer than retain (1 s) ago, for `run` to destroy.
            assert cli("rotate", NAME, "--wait").code == 0
            time.sleep(1.2)
            kill_at(cli, boundary, "run")
        else:
            kill_at(cli, boundary, "rotate", NAME, "--wait")
        resumed = cli("run")
        assert resumed.code == 0, resumed.out + resumed.err
        check_pair(cli, pair, f"resumed after a kill at {boundary}")
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    states = [v["state"] for v in status["versions"]]
    assert states[-1] == "current" and "destroyed" in states
