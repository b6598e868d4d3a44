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

And kills around the incident flows (issue 15), every CI run, on every store:

- during a pre-empted ``rotate --wait``: the waiter paused at each boundary up to
  its promotion (or frozen asleep in its overlap) and killed once an emergency
  took its lease; and the emergency killed at each boundary while a waiter holds
  the lease (the waiter must then exit 4 having written nothing);
- during a backoff: ``run`` killed while the credential is in backoff after a
  failed rotation, and a manual ``rotate`` killed right after its on_promote hook
  failed (while it revokes the new key).

After each kill, ``rotatectl run`` (repeated as needed) settles the credential with
every invariant holding, and starts nothing before the backoff ends.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotatectl.engine import BOUNDARIES, SAME_POINT_WHEN_ATOMIC
from rotatectl.model import Phase, RotationKind, VersionState
from tests.conftest import Cli

from .conftest import NAME, STORES, Backend, crash_at
from .invariants import Invariants, Snapshot

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
    # A store that saves a version change with its record (local, AWS) crosses each
    # record boundary in the state of the change's: that point was crashed at already.
    same = SAME_POINT_WHEN_ATOMIC if "atomic-record" in backend.store().features() else {}
    for i, boundary in enumerate(BOUNDARIES):
        if boundary in same:
            backend.note("crashes", (backend.kind, boundary))
            continue
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


# -- kills during a pre-empted `rotate --wait` ---------------------------------------
#
# An emergency pre-empts any lease holder (invariant 5): it takes the lease with a
# higher fencing token and the holder, here a `rotate --wait`, stops at its next
# renewal or write. Kills on both sides: the waiter killed once the emergency took
# its lease, and the emergency killed at each boundary while the waiter still
# believes it holds the lease. `run` then finishes everything.

# What a `rotate --wait` crosses before it sleeps through its overlap.
WAITER_PAUSES = BOUNDARIES[: BOUNDARIES.index("after-promote-record") + 1]
ASLEEP = "asleep-in-overlap"  # the waiter killed while it sleeps (frozen, not at a boundary)
EMERGENCY_BOUNDARIES = tuple(b for b in BOUNDARIES if b not in DESTROY)
WAITING = {"overlap": "1h", "retain": "1h"}  # long enough that the waiter is still waiting


@contextlib.contextmanager
def processes(cli: Cli) -> Iterator[list[subprocess.Popen[str]]]:
    """Background CLIs started in the block: any still running at its end is killed
    (with its output recorded), so a failing test never leaves one behind."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate(timeout=30)
                cli.record(("background", "killed: left over"), proc.returncode, out, err)


def pause_at(
    cli: Cli, procs: list[subprocess.Popen[str]], boundary: str, *args: str, timeout: float = 60
) -> subprocess.Popen[str]:
    """Start ``rotatectl ARGS`` and return it once it has paused at ``boundary``: alive,
    holding what it holds there (as :func:`crash_at`, without the kill)."""
    marker = cli.root / f"paused-{time.monotonic_ns()}"
    env = {"ROTATECTL_TEST_PAUSE_AT": boundary, "ROTATECTL_TEST_PAUSE_FILE": str(marker)}
    proc = cli.popen(*args, env=env)
    procs.append(proc)
    deadline = time.monotonic() + timeout
    while not (marker.exists() and marker.read_text().endswith("\n")):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
            raise AssertionError(f"{args} did not pause at {boundary}:\n{out}{err}")
        time.sleep(0.02)
    assert marker.read_text().split() == [str(proc.pid), boundary]
    return proc


def asleep(
    cli: Cli, procs: list[subprocess.Popen[str]], inv: Invariants, *args: str, timeout: float = 60
) -> subprocess.Popen[str]:
    """Start ``rotatectl ARGS`` (a ``rotate --wait``) and return it once it holds the
    lease in the overlap phase of the rotation it promoted: sleeping until the overlap
    ends, renewing the lease every few seconds."""
    before = inv.snapshot().rotation
    proc = cli.popen(*args)
    procs.append(proc)
    deadline = time.monotonic() + timeout
    while True:
        snap = inv.snapshot()
        r = snap.rotation
        new = snap.find(r.new_version_id) if r is not None else None
        if (
            r is not None
            and (before is None or r.id != before.id)
            and r.phase is Phase.OVERLAP
            and new is not None
            and new.state is VersionState.CURRENT
            and (snap.lock_holder or "").endswith(f":{proc.pid}")
        ):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
            raise AssertionError(f"{args} is not waiting in its overlap:\n{out}{err}")
        time.sleep(0.1)
    time.sleep(0.5)  # past the record write and its event: into the sleep
    return proc


def kill(cli: Cli, backend: Backend, proc: subprocess.Popen[str], label: str) -> int:
    """SIGKILL a background CLI (paused, frozen or sleeping); return its pid."""
    assert proc.poll() is None, f"the process to kill at {label} has exited ({proc.returncode})"
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    cli.record((f"pid {proc.pid}", f"killed at {label}"), proc.returncode, out, err)
    assert proc.returncode == -signal.SIGKILL
    backend.note("crashes", (backend.kind, label))
    return proc.pid


def settle(cli: Cli, inv: Invariants, what: str, *, tries: int = 3) -> Snapshot:
    """``rotatectl run`` until the credential is settled, checking every invariant after
    each run. A run that finishes a failed rotation exits 1 naming the hook's error."""
    for attempt in range(1, tries + 1):
        run = cli("run")
        text = run.out + run.err
        assert run.code in (0, 1), f"run exited {run.code} {what}:\n{text}"
        if run.code == 1:
            assert HOOK_ERROR in text, text
        snap = inv.check(f"{what}, run {attempt} (exit {run.code})")
        finished = snap.rotation is None or snap.rotation.phase.terminal
        if run.code == 0 and finished and snap.lock_holder is None:
            return inv.check(f"{what}: settled", settled=True)
    raise AssertionError(f"{tries} runs did not settle {what}")


def emergency_took_over(cli: Cli, name: str, waiter: subprocess.Popen[str]) -> None:
    """`emergency` (exit 0) pre-empts the live waiter and says so."""
    run = cli("emergency", name, "--reason", "leak", "--yes")
    text = run.out + run.err
    assert run.code == 0, f"the emergency exited {run.code}:\n{text}"
    assert "pre-empted" in text and f":{waiter.pid}" in text, text


def only_the_current_key_is_accepted(snap: Snapshot) -> None:
    accepted = [(v.number, v.state.value) for v in snap.versions if v.state.accepted]
    assert accepted == [(snap.versions[-1].number, "current")], snap.states()


def unchanged(before: Snapshot, after: Snapshot) -> bool:
    return (before.versions, before.rotation, before.revision, before.history) == (
        after.versions,
        after.rotation,
        after.revision,
        after.history,
    ) and before.lock_holder == after.lock_holder


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_a_waiting_rotate_once_an_emergency_took_its_lease(cli: Cli, backend: Backend) -> None:
    """A `rotate --wait`, paused at each boundary up to its promotion (or frozen while
    it sleeps through the overlap), is pre-empted by an emergency, then SIGKILLed
    before it noticed. The emergency has finished; `run` settles; nothing the killed
    waiter left behind breaks an invariant."""
    backend.configure(**WAITING)
    inv = backend.invariants(**WAITING)
    first_key(cli, inv)
    for pause in (*WAITER_PAUSES, ASLEEP):
        with processes(cli) as procs:
            args = ("rotate", NAME, "--wait")
            if pause == ASLEEP:
                waiter = asleep(cli, procs, inv, *args)
                waiter.send_signal(signal.SIGSTOP)  # it must not notice before the kill
            else:
                waiter = pause_at(cli, procs, pause, *args)
            emergency_took_over(cli, NAME, waiter)
            kill(cli, backend, waiter, pause)
        snap = inv.check(f"the waiter killed at {pause}, after the emergency")
        assert snap.rotation is not None and snap.rotation.kind is RotationKind.EMERGENCY
        assert snap.rotation.phase.terminal, snap.rotation.phase
        snap = settle(cli, inv, f"after the waiter killed at {pause}")
        assert snap.rotation is not None and snap.rotation.kind is RotationKind.EMERGENCY
        only_the_current_key_is_accepted(snap)


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_an_emergency_that_preempted_a_waiting_rotate(cli: Cli, backend: Backend) -> None:
    """One credential per boundary, each with a `rotate --wait` asleep in its overlap:
    an emergency is SIGKILLed at that boundary after it took the waiter's lease. The
    waiter notices at its next renewal, exits 4 and writes nothing; `run` takes over
    the dead emergency's lease and finishes it."""
    names = [f"{NAME}-{i}" for i in range(len(EMERGENCY_BOUNDARIES))]
    backend.configure(names, **WAITING)
    shared = backend.store()
    checkers = {n: backend.invariants(n, store=shared, **WAITING) for n in names}
    run = cli("rotate", *names)
    assert run.code == 0, run.out + run.err
    for n in names:
        checkers[n].check("first key", settled=True, versions=1)
    killed: dict[str, Snapshot] = {}
    with processes(cli) as procs:
        waiters = {n: asleep(cli, procs, checkers[n], "rotate", n, "--wait") for n in names}
        for n, boundary in zip(names, EMERGENCY_BOUNDARIES, strict=True):
            pid = crash_at(cli, backend, boundary, "emergency", n, "--reason", "leak", "--yes")
            killed[n] = checkers[n].check(f"emergency killed at {boundary}", killed_pid=pid)
        for n, waiter in waiters.items():
            try:
                out, err = waiter.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the pre-empted waiter of {n} is still running") from None
            cli.record(("rotate", n, "--wait"), waiter.returncode, out, err)
            assert waiter.returncode == 4, f"the pre-empted waiter exited {waiter.returncode}"
            assert "pre-empted by emergency" in out + err, out + err
            after = checkers[n].check(f"the waiter of {n} stopped")
            assert unchanged(killed[n], after), f"the pre-empted waiter of {n} wrote"
    run = cli("run")
    text = run.out + run.err
    assert run.code == 0, text
    assert "took over the lock" in text, text
    for n, boundary in zip(names, EMERGENCY_BOUNDARIES, strict=True):
        snap = checkers[n].check(f"resumed the emergency killed at {boundary}", settled=True)
        assert snap.rotation is not None and snap.rotation.kind is RotationKind.EMERGENCY
        assert snap.states() == [(1, "retired"), (2, "retired"), (3, "current")], boundary


# -- kills during a backoff -------------------------------------------------------------
#
# A failed rotation (on_promote fails) exits 1, runs on_failure once, and `run` does
# not start the credential again before its backoff (invariant 9). A `run` killed
# while the credential is in backoff (destroying the failed rotation's revoked key),
# and a manual `rotate` killed while it revokes the key of the rotation that just
# failed, are resumed by `run` without starting anything in the backoff.

HOOK_ERROR = "deploy failed: nginx reload"
BACKOFF = {"max_age": "1s", "backoff": "1h"}  # always due: only the backoff holds run
# Where a failing rotation stops: revoking its new key, after on_promote failed.
AFTER_FAILURE = ("after-disable", "after-retire")


def failing_hooks(backend: Backend, tmp: Path, **policy: str) -> Path:
    """Reconfigure NAME with an on_promote hook that fails and an on_failure hook that
    counts its calls (in the returned file)."""
    calls = tmp / "on_failure.calls"
    scripts = {
        "on_promote": f'echo "{HOOK_ERROR}" >&2\nexit 1',
        "on_failure": f'echo "$ROTATECTL_ROTATION_ID" >> "{calls}"',
    }
    for event, body in scripts.items():
        script = tmp / f"{event}.sh"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    backend.configure(**policy)
    config = backend.cli.cwd / "rotatectl.toml"
    hooks = ", ".join(f'{event} = ["{tmp / event}.sh"]' for event in scripts)
    config.write_text(config.read_text() + f'hooks = {{ {hooks}, timeout = "10s" }}\n')
    return calls


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_until_due(inv: Invariants) -> None:
    """Sleep until the current key is older than BACKOFF's max_age: due, so that only
    the backoff can hold `run`."""
    (current,) = inv.snapshot().current
    assert current.promoted is not None
    due = current.promoted + timedelta(seconds=1)
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() + 0.05))


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_run_while_the_credential_is_in_backoff(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """The credential is due but in backoff after a failed rotation: `run` only destroys
    the failed rotation's revoked key, and is killed there; the resume finishes the
    destroy and still starts nothing before the backoff ends."""
    backend.configure(**BACKOFF)
    inv = backend.invariants()
    first_key(cli, inv)
    calls = failing_hooks(backend, tmp_path, **BACKOFF)
    for i, boundary in enumerate(DESTROY):
        failed = cli("rotate", NAME)  # a manual rotate is not held by the backoff
        assert failed.code == 1 and HOOK_ERROR in failed.out + failed.err, failed
        snap = inv.check(f"failure {i + 1}", settled=True, versions=i + 2)
        assert snap.rotation is not None and snap.rotation.failed
        wait_for_retain(inv, number=i + 2)
        pid = crash_at(cli, backend, boundary, "run")
        inv.check(f"run killed at {boundary} in the backoff", killed_pid=pid)
        snap = settle(cli, inv, f"after run was killed at {boundary} in the backoff")
        assert "retry after" in cli.runs[-1].out + cli.runs[-1].err
        assert snap.states()[-1] == (i + 2, "destroyed"), snap.states()
        assert len(snap.versions) == i + 2, (
            f"run started a rotation in the backoff: {snap.states()}"
        )
        assert snap.rotation is not None and snap.rotation.failed
        assert len(lines(calls)) == i + 1, f"on_failure ran {len(lines(calls))} times"
    assert inv.snapshot().states() == [(1, "current"), (2, "destroyed"), (3, "destroyed")]


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_kill_a_rotate_right_after_its_rotation_failed(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """A manual `rotate` whose on_promote fails is killed while it revokes the new key:
    `run` finishes the failure (exit 1 naming the hook's error, on_failure once), and
    then backs off (exit 0, "retry after") although the credential is due."""
    backend.configure(**BACKOFF, retain="1h")
    inv = backend.invariants(retain="1h")
    first_key(cli, inv)
    calls = failing_hooks(backend, tmp_path, **BACKOFF, retain="1h")
    wait_until_due(inv)
    for i, boundary in enumerate(AFTER_FAILURE):
        pid = crash_at(cli, backend, boundary, "rotate", NAME)
        snap = inv.check(f"rotate killed at {boundary} after on_promote failed", killed_pid=pid)
        assert snap.rotation is not None and snap.rotation.failure, snap.rotation
        snap = settle(cli, inv, f"after rotate was killed at {boundary}")
        assert "retry after" in cli.runs[-1].out + cli.runs[-1].err
        assert (
            snap.rotation is not None and snap.rotation.failed and snap.rotation.failures == i + 1
        )
        assert len(snap.versions) == i + 2, (
            f"run started a rotation in the backoff: {snap.states()}"
        )
        assert snap.states()[-1] == (i + 2, "retired"), snap.states()
        assert lines(calls) == [r.id for r in snap.rotations if r.failed], lines(calls)
    assert inv.snapshot().states()[0] == (1, "current")
