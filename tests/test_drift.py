"""Drift: a store changed behind rotatectl's back is reported, blocks rotation, and is resolved."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

from rotatectl import keyformat
from rotatectl.drift import detect, resolve
from rotatectl.engine import Outcome

from .conftest import Cli
from .test_runner import World, rotate

NAME = "partners/acme"


def test_a_changed_value_is_drift_that_blocks_rotation_until_adopted() -> None:
    w = World()
    rotate(w)
    assert detect(w.target()) == []
    outsider = keyformat.generate("rk")
    w.store.tamper(NAME, outsider)
    problems = detect(w.target())
    assert len(problems) == 1 and "changed outside rotatectl" in problems[0]
    r = w.runner().rotate(w.target())
    assert r.outcome is Outcome.ATTENTION and int(r.exit_code) == 3
    assert "--adopt" in r.message and w.states() == [(1, "current")]
    resolve(w.target(), "adopt", w.clock.now())
    assert detect(w.target()) == []
    # A new current version; the replaced one stays accepted for its overlap.
    assert w.states() == [(1, "previous"), (2, "current")]
    assert w.store.versions(NAME)[1].key_id == keyformat.parse(outsider).key_id
    # `run` retires it after the overlap and the usage gate; rotations go on. (The
    # world's invariants do not apply: the fake issuer never minted the outsider key.)
    for _ in range(10):
        result = w.runner().advance(w.target(), start_if_due=False)
        if result.outcome is not Outcome.WAITING or result.until is None:
            break
        w.clock.advance(result.until - w.clock.now())
    assert w.states() == [(1, "retired"), (2, "current")]
    w.clock.advance(timedelta(days=2))
    assert rotate(w, propagation=timedelta(0)).phase is not None


def test_emergency_is_never_blocked_by_drift() -> None:
    w = World()
    rotate(w)
    w.store.tamper(NAME, "an-outside-password")
    w.rotations_started += 1
    assert w.runner().emergency(w.target(), "leak").outcome is Outcome.DONE


def test_cli_status_check_adopt_restore(cli: Cli) -> None:
    cli("rotate", NAME)
    assert cli("status").code == 0
    db = cli.state_dir / "state.db"
    with sqlite3.connect(db) as conn:  # the change behind our back
        conn.execute("UPDATE versions SET value = 'hunter2-outside' WHERE state = 'current'")
    run = cli("status", "-o", "json")
    assert run.code == 3
    assert "changed outside rotatectl" in json.loads(run.out)["credentials"][0]["drift"][0]
    run = cli("rotate", NAME)
    assert run.code == 3 and "drift" in run.err
    run = cli("check")
    assert run.code == 3 and "DRIFT" in run.err
    run = cli("check", NAME, "--restore")
    assert run.code == 1 and "single copy" in run.err
    run = cli("check", NAME, "--adopt")
    assert run.code == 0, run.err
    assert cli("status").code == 0
    data = json.loads(cli("status", "-o", "json").out)["credentials"][0]
    adopted = next(v for v in data["versions"] if v["state"] == "current")
    assert adopted["number"] == 2
    assert adopted["fingerprint"].startswith("scrypt1:")  # low-entropy value: slow hash
    actions = [r["action"] for r in json.loads(cli("audit", "-o", "json").out)["records"]]
    assert "drift-adopted" in actions
    # The adoption's rotation is in flight (the replaced key in its overlap): `rotate`
    # continues it, and refuses an override that no longer applies.
    assert cli("rotate", NAME).code == 0
    assert cli("rotate", NAME, "--propagation", "0s").code == 2
