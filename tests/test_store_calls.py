"""What the CLI asks of the local store, counted in SQLite transactions (issue 10).

The counts are exact: a change that adds a read or a write to a rotation, to
``status`` or to a no-op ``run`` shows up here (and in ``benchmarks/run.py``).
"""

from __future__ import annotations

import json
import sqlite3

from .conftest import Cli

NAMES = [f"fleet/c{i:02d}" for i in range(30)]


def _fleet(cli: Cli) -> None:
    (cli.cwd / "rotatectl.toml").write_text("".join(f'[credentials."{name}"]\n' for name in NAMES))
    assert cli("rotate", *NAMES).code == 0


def test_status_of_many_credentials_is_three_transactions_and_still_finds_drift(
    cli: Cli,
) -> None:
    _fleet(cli)
    run, calls = cli.counted("status", "-o", "json", count="local")
    assert run.code == 0, run.err
    # The schema check on open, one snapshot of every record, one read of every
    # current value (the drift check): not one read a credential.
    assert calls == {"read: open": 1, "read: read snapshot": 1, "read: read current values": 1}

    with sqlite3.connect(cli.state_dir / "state.db") as db:
        db.execute(
            "UPDATE versions SET value = 'changed-by-hand' WHERE path = ? AND state = 'current'",
            (NAMES[7],),
        )
    run, calls = cli.counted("status", "-o", "json", count="local")
    assert run.code == 3, run.err
    drift = {c["name"]: c["drift"] for c in json.loads(run.out)["credentials"]}
    assert [name for name, lines in drift.items() if lines] == [NAMES[7]]
    assert "changed outside rotatectl" in drift[NAMES[7]][0]
    assert sum(calls.values()) <= 3


def test_a_no_op_run_is_three_transactions_and_a_rotation_at_most_eleven(cli: Cli) -> None:
    _fleet(cli)
    run, calls = cli.counted("run", count="local")
    assert run.code == 0, run.err
    # The snapshots, and the current values for the drift check, each in one transaction.
    assert calls == {"read: open": 1, "read: read snapshot": 1, "read: read current values": 1}

    run, calls = cli.counted(
        "rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", count="local"
    )
    assert run.code == 0, run.err
    writes = {op: n for op, n in calls.items() if op.startswith("write")}
    # Issue 21: each version change is saved with its rotation record in one
    # transaction (publish, promote, retire with the completed record); the start is
    # the one record saved alone, and the retire intent is not needed (one key of a
    # store-only issuer leaves in the same write that completes the rotation).
    assert writes == {
        "write: lock": 1,
        "write: save rotation": 1,
        "write: commit": 3,
        "write: release lock": 1,
    }
    # One state read, after taking the lease: every later step works from what this
    # store wrote itself under it. The current value once, for the drift check.
    assert calls["read: read state"] == 1 and calls["read: read value"] <= 1
    assert sum(calls.values()) <= 11
