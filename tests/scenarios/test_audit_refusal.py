"""Issue 15, item 8: an audit record that cannot be written refuses the action.

The audit log lives on a tmpfs of the test's own, filled to the last byte (a
really full disk, see tests/fulldisk.py); the store does not. Each test drives
the real CLI against the local store, moto_server and OpenBao and reads what it
left through a store adapter of its own:

1. ``rotate`` of a new credential, and of one with a key, exits 1 with one line
   naming the audit log and ``No space left on device``; its first record is
   audited before the rotation record, so nothing changed: no key minted, no
   rotation record, the log not touched;
2. ``emergency`` goes on (exit 3): the old key retired, the new one current,
   and the output says ``AUDIT LOG NOT WRITTEN``;
3. once space is freed, ``rotate`` works and ``audit verify`` finds the log
   whole: the failed writes left no torn record;
4. a rotation stopped half-way (its ``run`` after the propagation cannot audit)
   does no side effect after the failed write, stays in flight, and ``run``
   finishes it once the log can be written, every invariant holding.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotatectl.model import Phase, Rotation
from tests.conftest import Cli, CliRun
from tests.fulldisk import fill
from tests.reliability.invariants import Store

from .conftest import NAME, STORES, Backend
from .test_incident_flows import expect, states

NO_SPACE = "No space left on device"
RETAIN = "1h"  # a retired key stays retired (not destroyed) for the test's duration


def on_tmpfs(backend: Backend, tmpfs: Path) -> Path:
    """rotatectl.toml for NAME on the backend's store (no propagation, no overlap,
    retain 1 h), its audit log on ``tmpfs``."""
    log = tmpfs / "audit.jsonl"
    backend.configure(retain=RETAIN)
    config = backend.cli.cwd / "rotatectl.toml"
    config.write_text(config.read_text() + f'\n[audit]\npath = "{log}"\n')
    return log


def log_bytes(log: Path) -> tuple[bytes, bytes]:
    """The log and its head file, byte for byte (an absent file reads as empty)."""
    head = log.with_name(log.name + ".head")
    return (
        log.read_bytes() if log.exists() else b"",
        head.read_bytes() if head.exists() else b"",
    )


def refused(run: CliRun, log: Path) -> str:
    """Exit 1, and one line that names the audit log and the full disk."""
    text = expect(run, 1)
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"more than one line:\n{text}"
    assert f"audit log {log}: {NO_SPACE}" in lines[0], text
    return lines[0]


def record(store: Store) -> Rotation | None:
    rotation, _ = store.load_rotation(NAME)
    return rotation


def verified(cli: Cli, log: Path) -> None:
    run = cli("audit", "verify")
    assert run.code == 0, f"audit verify exited {run.code}:\n{run.out}{run.err}"
    assert f"audit log {log}: " in run.out and "chain intact" in run.out, run.out + run.err


# -- 1. a refused start changes nothing ---------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rotate_of_a_new_credential_is_refused_and_mints_nothing(
    tmpfs: Path, cli: Cli, backend: Backend
) -> None:
    log = on_tmpfs(backend, tmpfs)
    store = backend.store()
    fill(tmpfs)
    before = log_bytes(log)

    line = refused(cli("rotate", NAME), log)
    assert line.startswith(f"{NAME}: ") and f"start: audit log {log}: " in line, line
    assert states(store) == [], "a key was minted although its start could not be audited"
    assert record(store) is None, "a rotation record was written before its audit record"
    assert backend.lock_holder(NAME) is None
    assert log_bytes(log) == before, "the refused start left bytes in the audit log"

    refused(cli("rotate", NAME), log)  # and again: nothing left behind to trip on
    refused(cli("run"), log)  # run's start of the first key, the same
    assert states(store) == [] and record(store) is None
    assert log_bytes(log) == before
    backend.invariants(retain=RETAIN).check("after two refused starts", settled=True, versions=0)


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_rotate_of_a_credential_with_a_key_is_refused_and_changes_nothing(
    tmpfs: Path, cli: Cli, backend: Backend
) -> None:
    log = on_tmpfs(backend, tmpfs)
    store = backend.store()
    expect(cli("rotate", NAME), 0)
    assert states(store) == [(1, "current")]
    first = record(store)
    assert first is not None and first.phase.terminal
    fill(tmpfs)
    before = log_bytes(log)

    line = refused(cli("rotate", NAME), log)
    assert line.startswith(f"{NAME}: ") and f"start: audit log {log}: " in line, line
    assert states(store) == [(1, "current")], "rotate went on without its audit record"
    assert record(store) == first, "the rotation record changed although its start was refused"
    assert backend.lock_holder(NAME) is None
    assert log_bytes(log) == before, "the refused start left bytes in the audit log"
    backend.invariants(retain=RETAIN).check("after the refused rotate", settled=True, versions=1)


# -- 2. an emergency goes on, loudly --------------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_emergency_goes_on_and_says_the_log_missed_it(
    tmpfs: Path, cli: Cli, backend: Backend
) -> None:
    log = on_tmpfs(backend, tmpfs)
    store = backend.store()
    expect(cli("rotate", NAME), 0)
    fill(tmpfs)
    before = log_bytes(log)

    text = expect(cli("emergency", NAME, "--reason", "leak", "--yes"), 3)
    assert "Traceback" not in text, text
    missed = [line for line in text.splitlines() if "AUDIT LOG NOT WRITTEN" in line]
    assert missed, f"the emergency did not say the audit log missed it:\n{text}"
    assert all(f"audit log {log}: {NO_SPACE}" in line for line in missed), text
    # Its first record (before the rotation record) and the incident record, at least.
    assert any("(emergency-requested)" in line for line in missed), text
    assert any("(emergency)" in line for line in missed), text
    assert "the audit log missed part of this emergency" in text, text
    assert states(store) == [(1, "retired"), (2, "current")], text
    rotation = record(store)
    assert rotation is not None and rotation.phase.terminal, rotation
    assert backend.lock_holder(NAME) is None
    assert log_bytes(log) == before, "a failed write left bytes in the audit log"
    backend.invariants(retain=RETAIN).check("after the emergency", settled=True, versions=2)


# -- 3. space again: the log goes on, whole ------------------------------------------------


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_after_space_is_freed_rotate_works_and_the_log_is_whole(
    tmpfs: Path, cli: Cli, backend: Backend
) -> None:
    log = on_tmpfs(backend, tmpfs)
    store = backend.store()
    expect(cli("rotate", NAME), 0)
    verified(cli, log)
    fill(tmpfs)
    before = log_bytes(log)
    refused(cli("rotate", NAME), log)
    expect(cli("emergency", NAME, "--reason", "leak", "--yes"), 3)
    refused(cli("rotate", NAME), log)
    assert states(store) == [(1, "retired"), (2, "current")]
    assert log_bytes(log) == before, "a failed write left bytes in the audit log"

    (tmpfs / "filler").unlink()
    text = expect(cli("rotate", NAME), 0)
    assert "audit" not in text.lower(), text
    assert states(store) == [(1, "retired"), (2, "retired"), (3, "current")], text
    assert log.read_bytes().startswith(before[0]), "the log was rewritten"
    verified(cli, log)
    backend.invariants(retain=RETAIN).check("after space came back", settled=True, versions=3)


# -- 4. stopped half-way, resumed once the log can be written -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_rotation_stopped_by_the_log_does_nothing_more_and_resumes(
    tmpfs: Path, cli: Cli, backend: Backend
) -> None:
    """v2 is pending through a 2 s propagation when the disk fills up. Cutting the
    propagation short is refused (its audit record precedes it): v2 stays pending.
    After the propagation, `run` stops at the promotion's intent record: nothing is
    promoted or retired, and the rotation stays in flight. With space again, `run`
    finishes it, and the log holds the promotion's record."""
    log = on_tmpfs(backend, tmpfs)
    store = backend.store()
    checker = backend.invariants(retain=RETAIN)
    expect(cli("rotate", NAME), 0)
    expect(cli("rotate", NAME, "--propagation", "2s"), 0)
    assert states(store) == [(1, "current"), (2, "pending")]
    rotation = record(store)
    assert rotation is not None and rotation.phase is Phase.PROPAGATE
    assert rotation.published is not None
    checker.check("propagating")
    fill(tmpfs)
    before = log_bytes(log)

    # Whenever this runs (within the 2 s or after), the override's audit record comes first.
    refused(cli("rotate", NAME, "--propagation", "0s"), log)
    assert states(store) == [(1, "current"), (2, "pending")], "promoted after a refused override"
    overridden = record(store)
    assert overridden is not None and overridden.id == rotation.id
    assert (overridden.phase, overridden.propagation) == (Phase.PROPAGATE, timedelta(seconds=2))
    assert log_bytes(log) == before
    checker.check("override refused")

    wait = rotation.published + timedelta(seconds=2.5) - datetime.now(UTC)
    time.sleep(max(0.0, wait.total_seconds()))
    text = expect(cli("run"), 1)
    assert f"audit log {log}: {NO_SPACE}" in text, text
    assert "Traceback" not in text, text
    # The promotion's intent is audited before it: the refused record stops it, so
    # v2 is not promoted (and v1 not retired) while the log cannot be written.
    after = states(store)
    assert after == [(1, "current"), (2, "pending")], (
        f"a side effect after the failed audit write: {after}\n{text}"
    )
    stopped = record(store)
    assert stopped is not None and stopped.id == rotation.id, "the rotation was replaced"
    assert not stopped.phase.terminal, f"the rotation was lost: {stopped.phase}"
    assert backend.lock_holder(NAME) is None
    assert log_bytes(log) == before
    checker.check("stopped by the audit log")

    (tmpfs / "filler").unlink()
    text = expect(cli("run"), 0)
    assert states(store) == [(1, "retired"), (2, "current")], text
    finished = record(store)
    assert finished is not None and finished.id == rotation.id and finished.phase.terminal
    checker.check("resumed", settled=True, versions=2)
    verified(cli, log)
    actions = [json.loads(line)["action"] for line in log.read_text().splitlines()]
    assert actions[-5:] == ["promote", "promoted", "retire", "retired", "completed"], actions
