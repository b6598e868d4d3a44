"""emergency, rollback, abort and usage through the real CLI on the local store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .conftest import Cli
from .test_cli import NAME, one_line_error, states, status_json


def test_emergency_needs_yes_off_a_terminal_and_a_reason(cli: Cli) -> None:
    cli("rotate", NAME)
    one_line_error(cli("emergency", NAME, "--reason", "leak"), 2)
    one_line_error(cli("emergency", NAME, "--reason", "  ", "--yes"), 2)
    one_line_error(cli("emergency", "nobody", "--reason", "leak", "--yes"), 2)
    assert states(cli) == [(1, "current")]


def test_emergency_revokes_the_old_key_and_reports_the_time(cli: Cli) -> None:
    cli("rotate", NAME)
    leaked_id = status_json(cli)["credentials"][0]["current_key_id"]
    run = cli("emergency", NAME, "--reason", "pasted in chat", "--yes")
    assert run.code == 0, run.err
    assert "retired v1" in run.out and "old key revoked" in run.out
    assert states(cli) == [(1, "retired"), (2, "current")]
    store = cli.store()
    try:
        accepted = [k.key_id for k in store.accepted_keys(NAME, NAME)]
        rotation, _ = store.load_rotation(NAME)
    finally:
        store.close()
    assert leaked_id not in accepted
    assert rotation is not None and rotation.kind.value == "emergency"
    assert rotation.reason == "pasted in chat"
    # A compromised key cannot be rolled back to: exit 2, one line.
    run = cli("rollback", NAME)
    one_line_error(run, 2)
    assert "compromised" in run.err


def test_abort_then_rollback_through_the_cli(cli: Cli) -> None:
    cli("rotate", NAME)
    cli("rotate", NAME, "--propagation", "1h")
    assert states(cli) == [(1, "current"), (2, "pending")]
    run = cli("rollback", NAME)
    one_line_error(run, 2)
    assert "abort" in run.err
    run = cli("abort", NAME, "--reason", "wrong scopes", "-o", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["results"][0]["phase"] == "aborted"
    assert states(cli) == [(1, "current"), (2, "retired")]
    one_line_error(cli("abort", NAME), 2)

    cli("rotate", NAME, "--propagation", "0s")
    assert states(cli) == [(1, "previous"), (2, "retired"), (3, "current")]
    run = cli("rollback", NAME, "--reason", "clients broke")
    assert run.code == 0, run.err
    assert states(cli) == [(1, "current"), (2, "retired"), (3, "previous")]
    data = status_json(cli)["credentials"][0]
    assert data["rotation"]["kind"] == "rollback" and data["current_version"] == 1


def test_usage_command_shows_each_version_and_the_gate(cli: Cli) -> None:
    log = cli.root / "usage.jsonl"
    (cli.cwd / "rotatectl.toml").write_text(
        f'[credentials."{NAME}"]\nusage = {{ type = "access-log", path = "{log}" }}\n'
        'overlap = "1s"\n'
    )
    cli("rotate", NAME)
    old = status_json(cli)["credentials"][0]["current_key_id"]
    cli("rotate", NAME, "--propagation", "0s")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    record = {"ts": now, "credential": NAME, "key_id": old, "result": "ok", "client": "billing"}
    log.write_text(json.dumps(record) + "\n")
    run = cli("usage", NAME, "-o", "json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    rows = {v["number"]: v for v in data["versions"]}
    assert rows[1]["usage"] == "seen" and rows[1]["clients"] == ["billing"]
    assert rows[2]["usage"] == "not-seen"
    assert data["gate"]["action"] in ("wait", "check-usage")
    run = cli("usage", NAME)
    assert run.code == 0 and "billing" in run.out and "next:" in run.out
