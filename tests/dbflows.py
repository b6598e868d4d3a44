"""Flows every database issuer's CLI tests share (tests/postgres, tests/mariadb,
tests/redis_acl): each server's tests pass their own login check and fields."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .conftest import Cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "database"


def secret(cli: Cli, name: str) -> dict[str, Any]:
    """The credential's current JSON secret, as `rotatectl get` prints it."""
    run = cli("get", name)
    assert run.code == 0, run.err
    doc: dict[str, Any] = json.loads(run.out)
    return doc


def rotations_alternate_and_retire_each_old_password(
    cli: Cli,
    name: str,
    users: Sequence[str],
    expected: dict[str, Any],
    works: Callable[[str, str], bool],
    rotations: int = 5,
) -> None:
    """The first key and ``rotations`` more through `rotate --wait`: each secret has
    exactly the fields of ``expected`` (their values as given) plus the username and
    password; the users alternate; the server (``works(user, password)``) accepts the
    last password and refuses every earlier one; v(n-1) retired, vn current; no
    password in any output but get's."""
    documents = []
    for _ in range(rotations + 1):
        run = cli("rotate", name, "--wait")
        assert run.code == 0, run.out + run.err
        documents.append(secret(cli, name))
    for number, doc in enumerate(documents, start=1):
        # The shape of AWS's database rotation templates: consumers keep working.
        assert set(doc) == {*expected, "username", "password"}
        assert {k: doc[k] for k in expected} == expected
        assert doc["username"] == users[(number - 1) % 2]
    assert works(str(documents[-1]["username"]), str(documents[-1]["password"]))
    for old in documents[:-1]:
        assert not works(str(old["username"]), str(old["password"]))
    status = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]
    assert [v["state"] for v in status["versions"]][-2:] == ["retired", "current"]
    for done in cli.runs:
        if done.args[:1] != ("get",):
            for doc in documents:
                assert str(doc["password"]) not in done.out + done.err


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


def accepted_passwords(cli: Cli, name: str) -> dict[str, str]:
    """username -> password of every version the store accepts (read with `get -V`)."""
    status = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]
    found: dict[str, str] = {}
    for v in status["versions"]:
        if v["state"] in ("pending", "current", "previous"):
            doc = json.loads(cli("get", name, "-V", str(v["number"])).out)
            found[doc["username"]] = doc["password"]
    return found


def kill_at_every_boundary_then_resume(
    cli: Cli,
    name: str,
    users: Sequence[str],
    usable: Callable[[], set[str]],
    works: Callable[[str, str], bool],
) -> None:
    """Kill the real CLI at every boundary of a rotation (retain must be 1s), resume
    with `run`, and check after each resume: ``usable()`` (the server's users of the
    pair, or named like them, that can log in) holds only ``users`` and only those an
    accepted version names, and each accepted version's password works (no third user,
    no user left with a password that is not in the store)."""
    from rotatectl.engine import BOUNDARIES

    assert cli("rotate", name, "--wait").code == 0
    for boundary in BOUNDARIES:
        if boundary.startswith("after-destroy"):
            # A key retired longer than retain (1 s) ago, for `run` to destroy.
            assert cli("rotate", name, "--wait").code == 0
            time.sleep(1.2)
            kill_at(cli, boundary, "run")
        else:
            kill_at(cli, boundary, "rotate", name, "--wait")
        resumed = cli("run")
        assert resumed.code == 0, resumed.out + resumed.err
        when = f"resumed after a kill at {boundary}"
        accepted = accepted_passwords(cli, name)
        can = usable()
        assert can <= set(users), f"{when}: a third user can log in: {can}"
        assert can <= set(accepted), f"{when}: {can - set(accepted)} can log in, unaccepted"
        for user, password in accepted.items():
            assert works(user, password), f"{when}: accepted {user} cannot log in"
    status = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]
    states = [v["state"] for v in status["versions"]]
    assert states[-1] == "current" and "destroyed" in states


def pool_demo_loses_nothing(
    script: str, port: int, users: Sequence[str], env: dict[str, str], secret: str, work: Path
) -> None:
    """``examples/database/<script>`` as written, against a real server: five rotations
    under a pool of client threads, no query failed, every old password refused after
    its retirement, the admin's ``secret`` in no output (the figures print with -s)."""
    summary = work / "summary.json"
    args = ["--port", str(port), "--users", *users, "--rotations", "5"]
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, "--json", str(summary)],
        env={**os.environ, **env},
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
    assert secret not in run.stdout + run.stderr
