"""One meaning of ``check --adopt`` on every store (issue 16 item 2), through the CLI.

Adopting drift takes the value clients read as a *new current version*; the
replaced key stays accepted as previous and goes through the overlap and the usage
gate like the old key of any rotation, and ``run`` retires it only once both say so.
``--restore`` puts rotatectl's key back and changes no version.

Each test runs on the local store, moto_server and OpenBao (``backend``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotatectl import keyformat
from rotatectl.model import Phase, RotationKind
from tests.conftest import Cli

from .conftest import NAME, STORES, Backend
from .test_operator_flows import lines_with, ok, states, tamper, text, versions, write_config

OVERLAP = 2.0  # seconds
QUIET = 3.0  # seconds: the usage gate's quiet period (longer than a CLI call)


def accepted_ids(backend: Backend) -> set[str]:
    return {k.key_id for k in backend.store().accepted_keys(NAME, NAME)}


def sighting(log: Path, key_id: str) -> datetime:
    """An access-log record: a client presented ``key_id`` now."""
    at = datetime.now(UTC)
    record = {"ts": at.isoformat(), "credential": NAME, "key_id": key_id, "result": "ok"}
    with log.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return at


def wait_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


@pytest.mark.slow
@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_adopt_puts_the_replaced_key_through_overlap_and_gate(cli: Cli, backend: Backend) -> None:
    log = cli.root / "usage.jsonl"
    log.write_text("")
    write_config(
        backend,
        {NAME: f'usage = {{ type = "access-log", path = "{log}" }}'},
        overlap=f"{OVERLAP:g}s",
        usage_quiet=f"{QUIET:g}s",
        retain="1h",
    )
    ok(cli("rotate", NAME))
    assert states(backend) == {1: "current"}
    v1 = versions(backend)[0]
    tamper(backend, NAME)
    theirs = backend.client_value(NAME)
    assert theirs is not None

    adopted = ok(cli("check", NAME, "--adopt"))
    assert "adopted" in text(adopted).lower(), text(adopted)
    # The operator is told the replaced key's way out.
    assert lines_with(adopted, "v2", "is current", "v1", "stays accepted", "rotatectl run"), text(
        adopted
    )

    # The store's value is a new current version; the replaced key stays accepted.
    assert states(backend) == {1: "previous", 2: "current"}, "adopt did not add a version"
    v2 = versions(backend)[1]
    assert keyformat.fingerprint_matches(v2.fingerprint, theirs)
    assert backend.client_value(NAME) == theirs, "adopting changed what clients read"
    assert {v1.key_id, v2.key_id} <= accepted_ids(backend)
    rotation, _ = backend.store().load_rotation(NAME)
    assert rotation is not None, "no rotation record: nothing will ever retire the old key"
    assert rotation.phase is Phase.OVERLAP
    assert rotation.kind is RotationKind.MANUAL
    assert (rotation.old_version_id, rotation.new_version_id) == (v1.version_id, v2.version_id)
    ok(cli("check", NAME))  # no drift left

    # Inside the overlap `run` keeps the replaced key (a client presents it too, so a
    # slow machine past the overlap still finds the gate closed).
    sighting(log, v1.key_id)
    ok(cli("run"))
    assert states(backend) == {1: "previous", 2: "current"}, "retired inside its overlap"
    demoted = versions(backend)[0].demoted
    assert demoted is not None

    # Past the overlap, a client still presenting the old key holds the gate.
    wait_until(demoted + timedelta(seconds=OVERLAP + 0.2))
    seen = sighting(log, v1.key_id)
    held = ok(cli("run"))
    assert states(backend) == {1: "previous", 2: "current"}, "retired while still in use"
    assert lines_with(held, "still in use"), text(held)
    assert v1.key_id in accepted_ids(backend)

    # Quiet for the gate's period: retired, and the rotation of the adoption completes.
    wait_until(seen + timedelta(seconds=QUIET + 0.2))
    ok(cli("run"))
    assert states(backend) == {1: "retired", 2: "current"}
    assert accepted_ids(backend) == {v2.key_id}
    rotation, _ = backend.store().load_rotation(NAME)
    assert rotation is not None and rotation.phase is Phase.COMPLETED
    assert backend.client_value(NAME) == theirs

    # Rotations go on from the adopted key.
    ok(cli("rotate", NAME))
    assert states(backend)[3] == "current"
    ok(cli("check", NAME))


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_adopt_is_refused_while_a_rotation_is_in_flight(cli: Cli, backend: Backend) -> None:
    write_config(backend, overlap="1h", retain="1h")
    ok(cli("rotate", NAME))
    ok(cli("rotate", NAME))  # v2 current, v1 previous for the hour
    tamper(backend, NAME)
    before = states(backend)

    refused = cli("check", NAME, "--adopt")
    assert refused.code != 0
    assert "in flight" in text(refused), text(refused)
    assert states(backend) == before, "a refused adopt wrote versions"
    ok(cli("check", NAME), 3)  # the drift is still reported
