"""The ``manual`` issuer's rotation killed at every boundary (issue 20), on the local
store: the person's commands (`rotate`, `supply`, `confirm`) and cron's `run` are
SIGKILLed where they pause, then the person goes on as `status` tells them. After
every kill and resume: one current key, the one last published; a key supplied to a
`supply` killed before it was published is asked for again (never half-kept)."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time

import pytest

from rotatectl.engine import BOUNDARIES

from ..conftest import Cli
from .conftest import NAME, Backend


def configure(cli: Cli) -> None:
    (cli.cwd / "rotatectl.toml").write_text(
        f"""[defaults]
propagation = "0s"
overlap = "0s"
retain = "1s"

[credentials."{NAME}"]
issuer = {{ type = "manual", owner = "ops" }}
"""
    )


def new_key() -> str:
    return "svc_" + secrets.token_hex(20)


def until_paused(cli: Cli, boundary: str, args: tuple[str, ...], stdin: str = "") -> bool:
    """Run ``rotatectl ARGS``; SIGKILL it if it pauses at ``boundary``. True if killed."""
    marker = cli.root / f"paused-{time.monotonic_ns()}"
    env = {"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen(
        cli.argv(*args),
        cwd=cli.cwd,
        env={**cli.env, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not touch it
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text().endswith("\n")):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    killed = marker.exists() and marker.read_text().endswith("\n")
    if killed:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    cli.record((*args, f"paused at {boundary}" if killed else "ran"), proc.returncode, out, err)
    return killed


def person_finishes(cli: Cli, supplied: list[str]) -> None:
    """What the person does as `status` asks, until nothing is in flight."""
    for _ in range(10):
        status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
        if not status["in_flight"]:
            return
        ask = status["waiting_for_person"]
        if ask is None:
            cli("run")
        elif ask["ask"].startswith("supply"):
            supplied.append(new_key())
            cli("supply", NAME, stdin=supplied[-1])
        else:
            assert cli("confirm", NAME).code == 0
    raise AssertionError("the rotation did not finish")


@pytest.mark.long  # ~30 s: 12 kills, each followed by the person's commands
@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_kill_at_every_boundary_then_the_person_goes_on(cli: Cli, backend: Backend) -> None:
    configure(cli)
    supplied = [new_key()]
    assert cli("supply", NAME, stdin=supplied[0]).code == 0
    for boundary in BOUNDARIES:
        if boundary.startswith("after-destroy"):
            time.sleep(1.2)  # v(n-1) retired more than retain (1s) ago
            assert until_paused(cli, boundary, ("run",)), boundary
        else:
            key = new_key()
            steps = [(("rotate", NAME), ""), (("supply", NAME), key), (("confirm", NAME), "")]
            killed_at = None
            for args, stdin in steps:
                if until_paused(cli, boundary, args, stdin):
                    killed_at = args[0]
                    break
            assert killed_at is not None, f"no command paused at {boundary}"
            cli("run")  # cron resumes what it can
            status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
            ask = status["waiting_for_person"]
            if boundary in ("after-start", "after-issue"):
                # The key never reached the store: the person is asked for one again.
                assert ask is not None and ask["ask"].startswith("supply"), (boundary, ask)
            else:
                supplied.append(key)
        person_finishes(cli, supplied)
        status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
        currents = [v for v in status["versions"] if v["state"] == "current"]
        assert len(currents) == 1, (boundary, status["versions"])
        assert cli("get", NAME).out.strip() == supplied[-1], boundary
    numbers = [v["number"] for v in status["versions"]]
    assert len(numbers) == len(set(numbers))
    assert "destroyed" in [v["state"] for v in status["versions"]]
