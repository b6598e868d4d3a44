"""Operator scenarios of issue 15, items 1-3: rollback, emergency, failed rotations.

Each test drives the real CLI against the local store, moto_server and OpenBao
and reads what it left through a store adapter of its own:

1. a rollback keeps the overlap of the key it demotes (counted from the
   rollback, not from the old key's first promotion);
2. an emergency pre-empts any lease holder (a ``rotate --wait`` on this host,
   a live process on another host) while a routine ``rotate`` is still locked out;
3. a failed rotation exits 1 naming the hook's own error, runs ``on_failure`` and
   notifies once, and ``run`` backs off (doubling, from ``backoff``) while a
   manual ``rotate`` may try at once; records stay small, and an emergency
   still goes through.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotatectl.model import Phase, RotationKind, Version, VersionState
from tests.conftest import Cli, CliRun
from tests.reliability.conftest import AwsBackend, LocalBackend, VaultBackend, seed_current
from tests.reliability.invariants import Store

from .conftest import NAME, STORES, Backend

HOOK_ERROR = "deploy failed: nginx reload"
FOREIGN = "ops@elsewhere:123"
RECORD_LIMIT = 16 * 1024

# -- helpers ---------------------------------------------------------------------------


def expect(run: CliRun, code: int) -> str:
    """Assert the exit code (showing the output if not); return stdout + stderr."""
    text = run.out + run.err
    command = " ".join(run.args)
    assert run.code == code, f"rotatectl {command} exited {run.code}, not {code}:\n{text}"
    return text


def states(store: Store) -> list[tuple[int, str]]:
    """[(number, state)] of every version of NAME, in order."""
    return [(v.number, v.state.value) for v in store.versions(NAME)]


def version(store: Store, number: int) -> Version:
    return next(v for v in store.versions(NAME) if v.number == number)


def accepted_ids(store: Store) -> set[str]:
    return {k.key_id for k in store.accepted_keys(NAME, NAME)}


def wait_for(what: str, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def hook(tmp_path: Path, name: str, body: str) -> Path:
    """An executable /bin/sh script ``tmp_path/name.sh`` running ``body``."""
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def failing_promote(tmp_path: Path) -> Path:
    return hook(tmp_path, "on_promote", f'echo "{HOOK_ERROR}" >&2\nexit 1')


def counting_failure(tmp_path: Path, calls: Path) -> Path:
    """An on_failure hook that appends one line per call to ``calls``."""
    return hook(tmp_path, "on_failure", f'echo "on_failure $ROTATECTL_CREDENTIAL" >> "{calls}"')


def configure(
    backend: Backend,
    *,
    hooks: Mapping[str, Path] | None = None,
    events: Path | None = None,
    **policy: str,
) -> None:
    """rotatectl.toml for NAME on the backend's store, with ``policy`` in [defaults],
    optional hooks and a log notifier writing JSON lines to ``events``."""
    notifier = f'\n[notifiers.log]\ntype = "log"\npath = "{events}"\n' if events else ""
    backend.configure(store_settings=notifier, **policy)
    lines = []
    if hooks:
        commands = ", ".join(f'{event} = ["{path}"]' for event, path in hooks.items())
        lines.append(f'hooks = {{ {commands}, timeout = "10s" }}')
    if events:
        lines.append('notify = ["log"]')
    config = backend.cli.cwd / "rotatectl.toml"
    config.write_text(config.read_text() + "".join(f"{line}\n" for line in lines))


def events_named(events: Path, name: str) -> list[dict[str, Any]]:
    if not events.exists():
        return []
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [e for e in lines if e.get("event") == name]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def status(cli: Cli, *args: str) -> CliRun:
    """``status NAME ARGS``; its exit code is not part of the contract here, only
    that it is not a usage error or a lock."""
    run = cli("status", NAME, *args)
    assert run.code in (0, 1, 3), f"status exited {run.code}:\n{run.out}{run.err}"
    return run


def status_json(cli: Cli) -> dict[str, Any]:
    (credential,) = json.loads(status(cli, "-o", "json").out)["credentials"]
    assert credential["name"] == NAME
    return dict(credential)


def retry_after(cli: Cli) -> datetime:
    """The ``retry_after`` of NAME in ``status -o json``."""
    credential = status_json(cli)
    value = credential.get("retry_after")
    assert isinstance(value, str), f"status -o json has no retry_after: {credential}"
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_sizes(backend: Backend) -> dict[str, int]:
    """Bytes of each document rotatectl keeps per credential as one record."""
    if isinstance(backend, AwsBackend):
        _, text = backend.record(NAME)
        return {f"{NAME}/.rotatectl": len(text.encode())}
    if isinstance(backend, VaultBackend):
        return {
            leaf: len(json.dumps(backend.read(backend.rel(NAME, leaf))).encode())
            for leaf in ("index", "rotation")
        }
    assert isinstance(backend, LocalBackend)
    conn = sqlite3.connect(f"file:{backend.db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT record FROM rotations WHERE path = ?", (NAME,)).fetchall()
    finally:
        conn.close()
    return {"rotations.record": max((len(r[0].encode()) for r in rows), default=0)}


# -- 1. rollback keeps the overlap ------------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rollback_keeps_the_demoted_key_for_its_overlap(cli: Cli, backend: Backend) -> None:
    """v1 has been in use for 2 h (longer than the 1 h overlap); rotate to v2, then
    roll back at once: v2, which clients just moved to, stays accepted as previous."""
    configure(backend, overlap="1h", retain="1h")
    store = backend.store()
    seed_current(store, timedelta(hours=2))

    expect(cli("rotate", NAME), 0)
    assert states(store) == [(1, "previous"), (2, "current")]
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.phase is Phase.OVERLAP

    expect(cli("rollback", NAME), 0)
    v2 = version(store, 2)
    assert states(store) == [(1, "current"), (2, "previous")], (
        "the rollback retired the key clients had just moved to"
    )
    assert v2.key_id in accepted_ids(store)
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.ROLLBACK
    assert not rotation.phase.terminal, f"the rollback ended at once ({rotation.phase})"

    expect(cli("run"), 0)
    assert states(store) == [(1, "current"), (2, "previous")], "run retired v2 within its overlap"
    assert v2.key_id in accepted_ids(store)
    backend.invariants(seeded=1, overlap="1h", retain="1h").check("after the rollback", versions=2)


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rollback_overlap_counts_from_the_rollback(cli: Cli, backend: Backend) -> None:
    """overlap 3 s, v1 promoted a minute ago: after the rollback v2 stays previous
    until 3 s after its demotion, then `run` retires it through the usage gate."""
    configure(backend, overlap="3s", retain="1h")
    store = backend.store()
    seed_current(store, timedelta(minutes=1))

    expect(cli("rotate", NAME), 0)
    assert states(store) == [(1, "previous"), (2, "current")]
    expect(cli("rollback", NAME), 0)
    assert states(store) == [(1, "current"), (2, "previous")], (
        "the rollback retired v2 at once (its overlap counted from v1's first promotion)"
    )
    demoted = version(store, 2).demoted
    assert demoted is not None
    expect(cli("run"), 0)
    if datetime.now(UTC) < demoted + timedelta(seconds=3):  # a slow machine may be past it
        assert states(store) == [(1, "current"), (2, "previous")]

    time.sleep(max(0.0, (demoted + timedelta(seconds=4) - datetime.now(UTC)).total_seconds()))
    expect(cli("run"), 0)
    assert states(store) == [(1, "current"), (2, "retired")]
    v2 = version(store, 2)
    assert v2.retired is not None and v2.demoted is not None
    assert v2.retired - v2.demoted >= timedelta(seconds=3), "v2 retired within its overlap"
    assert v2.key_id not in accepted_ids(store)
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.ROLLBACK
    assert rotation.phase.terminal


# -- 2. emergency is never locked out ------------------------------------------------


@contextlib.contextmanager
def background(cli: Cli, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``rotatectl ARGS`` in the background; SIGKILLed (its output recorded) if the
    block fails, so a failing test never waits for it."""
    proc = cli.popen(*args)
    try:
        yield proc
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        cli.record((*args, "killed: the test failed"), proc.returncode, out, err)
        raise


def finish(cli: Cli, proc: subprocess.Popen[str], what: str, timeout: float) -> CliRun:
    """Wait up to ``timeout`` for a background CLI; SIGKILL it if it is still running
    (and fail); record its output either way."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        cli.record((what, "killed: still running"), proc.returncode, out, err)
        raise AssertionError(f"{what} still ran {timeout}s later:\n{out}{err}") from None
    return cli.record((what,), proc.returncode, out, err)


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_emergency_preempts_a_waiting_rotate(cli: Cli, backend: Backend) -> None:
    """A `rotate --wait` holds the lease through its 1 h overlap; `emergency` pre-empts
    it at once, and the waiting process exits 4 saying so."""
    configure(backend, overlap="1h", retain="1h")
    store = backend.store()
    expect(cli("rotate", NAME), 0)

    with background(cli, "rotate", NAME, "--wait") as waiting:
        wait_for(
            "the waiting rotate to promote v2",
            lambda: waiting.poll() is not None or (2, "current") in states(store),
        )
        assert waiting.poll() is None, "rotate --wait ended before the overlap"
        started = time.monotonic()
        emergency = cli("emergency", NAME, "--reason", "leak", "--yes")
        took = time.monotonic() - started
        text = expect(emergency, 0)
        assert took < 20, f"the emergency took {took:.1f}s:\n{text}"
        pre_empted = finish(cli, waiting, "rotate --wait", timeout=30)
    text = pre_empted.out + pre_empted.err
    assert pre_empted.code == 4, f"the pre-empted rotate exited {pre_empted.code}:\n{text}"
    assert any("pre-empted by emergency" in line for line in text.splitlines()), text

    assert states(store) == [(1, "retired"), (2, "retired"), (3, "current")]
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.EMERGENCY
    assert rotation.phase.terminal, rotation.phase
    expect(cli("run"), 0)
    assert states(store) == [(1, "retired"), (2, "retired"), (3, "current")]
    assert backend.lock_holder(NAME) is None, "the pre-empted lease is still held"


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_emergency_preempts_a_lease_held_on_another_host(cli: Cli, backend: Backend) -> None:
    """A live lease of another host stops `rotate` (exit 4, naming it) but not
    `emergency`."""
    configure(backend, overlap="1h", retain="1h")
    store = backend.store()
    expect(cli("rotate", NAME), 0)
    store.acquire_lock(NAME, FOREIGN, timedelta(hours=1), datetime.now(UTC))

    text = expect(cli("rotate", NAME), 4)
    assert f"locked - held by {FOREIGN}" in text
    assert states(store) == [(1, "current")]

    text = expect(cli("emergency", NAME, "--reason", "leak", "--yes"), 0)
    assert states(store) == [(1, "retired"), (2, "current")], text
    rotation, _ = store.load_rotation(NAME)
    assert rotation is not None and rotation.kind is RotationKind.EMERGENCY
    assert rotation.phase.terminal, rotation.phase


# -- 3. a failed rotation is a failure, and run backs off -----------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_failed_rotation_exits_1_and_run_backs_off(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """v1 is due; on_promote fails: `rotate` exits 1 naming the hook's error, runs
    on_failure once, sends one "failed" event; `run` does not start it again before
    the backoff (15 m, then 30 m), a manual `rotate` tries at once."""
    calls, events = tmp_path / "on_failure.calls", tmp_path / "events.jsonl"
    hooks = {
        "on_promote": failing_promote(tmp_path),
        "on_failure": counting_failure(tmp_path, calls),
    }
    configure(backend, hooks=hooks, events=events, max_age="1d", overlap="1h", retain="1h")
    store = backend.store()
    seed_current(store, timedelta(days=2))

    text = expect(cli("rotate", NAME), 1)
    assert "on_promote" in text and HOOK_ERROR in text, text
    assert "no progress after" not in text, text
    assert len(lines_of(calls)) == 1, f"on_failure ran {len(lines_of(calls))} times"
    assert len(events_named(events, "failed")) == 1
    assert states(store) == [(1, "current"), (2, "retired")]

    text = expect(cli("run"), 0)
    assert "retry after" in text, text
    assert states(store) == [(1, "current"), (2, "retired")], "run started it again at once"
    assert len(lines_of(calls)) == 1 and len(events_named(events, "failed")) == 1

    run = status(cli)
    text = run.out + run.err
    assert "retry after" in text, text
    wait = retry_after(cli) - datetime.now(UTC)
    assert timedelta(minutes=14) < wait <= timedelta(minutes=15), f"retry after {wait}"

    text = expect(cli("rotate", NAME), 1)
    assert HOOK_ERROR in text, text
    assert states(store) == [(1, "current"), (2, "retired"), (3, "retired")]
    assert len(lines_of(calls)) == 2 and len(events_named(events, "failed")) == 2
    wait = retry_after(cli) - datetime.now(UTC)
    assert timedelta(minutes=29) < wait <= timedelta(minutes=30), f"retry after {wait}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_run_retries_after_the_backoff_which_doubles(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """backoff 3 s: fail; `run` at once does not attempt; 3.5 s later it does (exit 1);
    `run` at once then waits again, now 6 s."""
    configure(
        backend,
        hooks={"on_promote": failing_promote(tmp_path)},
        max_age="1d",
        retain="1h",
        backoff="3s",
    )
    store = backend.store()
    seed_current(store, timedelta(days=2))

    expect(cli("rotate", NAME), 1)
    failed = time.monotonic()
    assert len(states(store)) == 2
    assert "retry after" in expect(cli("run"), 0)
    assert len(states(store)) == 2, "run attempted within the backoff"

    time.sleep(max(0.0, failed + 3.5 - time.monotonic()))
    text = expect(cli("run"), 1)
    assert HOOK_ERROR in text, text
    failed_again = datetime.now(UTC)
    assert len(states(store)) == 3, "run did not attempt after the backoff"

    assert "retry after" in expect(cli("run"), 0)
    assert len(states(store)) == 3, "run attempted within the doubled backoff"
    wait = retry_after(cli) - failed_again
    assert timedelta(seconds=4.5) < wait <= timedelta(seconds=6), f"retry after {wait}"
    assert states(store)[0] == (1, "current")


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_failed_first_key_leaves_no_key_and_status_says_why(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """A brand-new credential whose on_promote fails on the first key: exit 1; no
    current key, and `status` says why."""
    configure(backend, hooks={"on_promote": failing_promote(tmp_path)})
    store = backend.store()

    text = expect(cli("rotate", NAME), 1)
    assert "on_promote" in text and HOOK_ERROR in text, text
    assert "no progress after" not in text, text
    left = states(store)
    assert all(state in ("retired", "destroyed") for _, state in left), left
    assert not accepted_ids(store)

    run = status(cli)
    text = run.out + run.err
    assert HOOK_ERROR in text, text
    credential = status_json(cli)
    assert credential["current_version"] is None
    assert HOOK_ERROR in json.dumps(credential), credential


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_repeated_failures_keep_the_record_small_and_emergency_works(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    """12 failing manual rotations leave every record under 16 KiB; an emergency still
    goes through (its failing on_promote is a warning)."""
    configure(backend)
    store = backend.store()
    expect(cli("rotate", NAME), 0)
    configure(backend, hooks={"on_promote": failing_promote(tmp_path)})

    codes = [cli("rotate", NAME).code for _ in range(12)]
    sizes = record_sizes(backend)
    assert all(size < RECORD_LIMIT for size in sizes.values()), f"record sizes: {sizes}"

    text = expect(cli("emergency", NAME, "--reason", "x", "--yes"), 0)
    assert "on_promote" in text and HOOK_ERROR in text, text
    after = states(store)
    assert after[-1] == (14, "current"), f"the emergency did not promote its new key: {after}"
    assert version(store, 1).state in (VersionState.RETIRED, VersionState.DESTROYED), after
    assert codes == [1] * 12, f"failing rotations exited {codes}"
