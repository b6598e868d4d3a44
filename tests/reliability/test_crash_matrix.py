"""Crash matrix: SIGKILL the real CLI at every side-effect boundary, on every store.

The runner pauses at ``ROTATECTL_TEST_PAUSE_AT=<boundary>`` (runner.env_boundary)
and the test kills it there with SIGKILL: no ``finally``, no lock release, no
record update. After every kill and every resume, :mod:`.invariants` reads the
store directly and checks every DESIGN.md invariant.

Two shapes, both over ``runner.BOUNDARIES`` x every store of ``conftest.STORES``:

- ``test_kill_at_every_boundary_in_turn`` (every CI run): one rotation killed
  at each boundary in order; each resume is itself killed at the next one, so
  every boundary is crashed on every store, and recovery is crashed too.
- ``test_kill_at_one_boundary_then_run`` (``-m long``): the full matrix of
  independent scenarios, one kill each, then ``rotatectl run`` until done.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from rotatectl.engine import BOUNDARIES
from rotatectl.model import Phase, VersionState
from tests.conftest import Cli

from .conftest import NAME, STORES, Backend, crash_at
from .invariants import Invariants

ROTATE = ("rotate", NAME, "--propagation", "0s", "--overlap", "0s")
DESTROY = tuple(b for b in BOUNDARIES if b.startswith("after-destroy"))


def test_the_matrix_covers_every_boundary_the_runner_has() -> None:
    # The matrix is built from runner.BOUNDARIES: a new boundary joins it by itself.
    assert len(BOUNDARIES) == len(set(BOUNDARIES)) >= 12
    assert DESTROY == ("after-destroy-issuer", "after-destroy")
    assert BOUNDARIES[0] == "after-start"


def wait_for_retain(inv: Invariants, number: int = 1) -> None:
    """Sleep until version ``number`` has been retired for longer than ``retain``."""
    snap = inv.snapshot()
    v = next(v for v in snap.versions if v.number == number)
    assert v.state is VersionState.RETIRED and v.retired is not None, snap.states()
    due = v.retired + inv.policy.retain
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() + 0.05))


def first_key(cli: Cli, inv: Invariants) -> None:
    run = cli("rotate", NAME)
    assert run.code == 0, run.err
    inv.check("after the first key", settled=True, versions=1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_at_every_boundary_in_turn(cli: Cli, backend: Backend) -> None:
    backend.configure()
    inv = backend.invariants()
    first_key(cli, inv)
    for i, boundary in enumerate(BOUNDARIES):
        if boundary in DESTROY and i and BOUNDARIES[i - 1] not in DESTROY:
            wait_for_retain(inv)
        args = ROTATE if i == 0 else ("run",)
        pid = crash_at(cli, backend, boundary, *args)
        # From the second kill on, the killed process is a resume that took over the
        # previous one's lock: the check sees the lock in the hands of the latest.
        snap = inv.check(f"killed at {boundary}", killed_pid=pid)
        assert snap.rotation is not None and snap.rotation.new_version_number == 2
    assert {b for _, b in backend.noted["crashes"]} == set(BOUNDARIES)
    run = cli("run")
    assert run.code == 0, run.err
    assert "took over the lock" in run.err
    snap = inv.check("after the last resume", settled=True, versions=2)
    assert snap.states() == [(1, "destroyed"), (2, "current")]
    assert [r.phase for r in snap.rotations] == [Phase.COMPLETED, Phase.COMPLETED]
    # And it stays done: another run changes nothing.
    again = cli("run")
    assert again.code == 0, again.err
    assert inv.check("idle", settled=True, versions=2).states() == snap.states()


def run_until_settled(cli: Cli, inv: Invariants, boundary: str) -> None:
    """The resume: `run` takes over the dead holder's lock and finishes in one go."""
    run = cli("run")
    assert run.code == 0, run.out + run.err
    assert "took over the lock" in run.err
    inv.check(f"resumed after a kill at {boundary}", settled=True, versions=2)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_at_one_boundary_then_run(cli: Cli, backend: Backend, boundary: str) -> None:
    # Long enough that the rotate that retires v1 cannot also destroy it on a slow machine.
    retain = "3s" if boundary in DESTROY else "1s"
    backend.configure(retain=retain)
    inv = backend.invariants(retain=retain)
    first_key(cli, inv)
    if boundary in DESTROY:
        run = cli(*ROTATE)
        assert run.code == 0, run.err
        inv.check("rotated", settled=True, versions=2)
        wait_for_retain(inv)
        pid = crash_at(cli, backend, boundary, "run")
    else:
        pid = crash_at(cli, backend, boundary, *ROTATE)
    inv.check(f"killed at {boundary}", killed_pid=pid)
    run_until_settled(cli, inv, boundary)
    snap = inv.snapshot()
    assert snap.states()[1] == (2, "current")
    if boundary in DESTROY:
        assert snap.states()[0] == (1, "destroyed")
    else:
        assert snap.states()[0] in ((1, "retired"), (1, "destroyed"))
        if snap.states()[0] == (1, "retired"):
            wait_for_retain(inv)
        run = cli("run")
        assert run.code == 0, run.err
        snap = inv.check("destroyed after retain", settled=True, versions=2)
        assert snap.states() == [(1, "destroyed"), (2, "current")]
