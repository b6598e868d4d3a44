"""The ``manual`` issuer through the CLI on the local store, moto_server and OpenBao
(issue 20 item 4), with a test that plays the person: cron's `run` never waits for
them; they are told once, reminded, then escalated past the deadline; `status -o
json` shows what they must do and since when; `supply` reads the key from stdin and
refuses a short one, one off the pattern, one used before and one nobody waits for;
retiring waits for `confirm`; no supplied key in any output, log or record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.reliability.conftest import assert_no_value_leaked

from .conftest import NAME, STORES, Backend
from .test_operator_flows import log_notifier, states

KEYS = ["acme_" + c * 24 for c in "abcdefgh"]
ISSUER = (
    'issuer = { type = "manual", owner = "payments-team", '
    'instructions = "https://acme.example/settings/keys", '
    'revoke_instructions = "delete it on the same page", '
    'pattern = "acme_[a-z0-9]{24}", remind_every = "%s", deadline = "%s" }'
)


def configure(backend: Backend, events: Path, remind: str = "1h", deadline: str = "3d") -> None:
    (backend.cli.cwd / "rotatectl.toml").write_text(
        f"""[defaults]
store = "{backend.table}"
propagation = "0s"
overlap = "0s"
retain = "1h"
notify = ["log"]

{backend.store_toml(None)}
{log_notifier(events)}
[credentials."{NAME}"]
{ISSUER % (remind, deadline)}
"""
    )


def told(events: Path) -> list[tuple[str, str]]:
    """(kind, severity) of each person event the log notifier received."""
    if not events.exists():
        return []
    found = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [(e["event"], e["severity"]) for e in found if e["event"].startswith("person-")]


def waiting(cli: Cli) -> dict[str, str] | None:
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    found: dict[str, str] | None = status["waiting_for_person"]
    return found


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_a_person_supplies_and_confirms_while_cron_never_waits(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    configure(backend, events)
    # Cron: the first rotation waits for the person; run returns at once (attention).
    started = time.monotonic()
    run = cli("run")
    assert run.code == 3, run.out + run.err
    assert time.monotonic() - started < 30
    assert "waiting for payments-team since " in run.err
    assert "create a new key at the service (https://acme.example/settings/keys)" in run.err
    assert f"rotatectl supply {NAME}" in run.err
    assert cli("run").code == 3
    assert told(events) == [("person-needed", "warning")]  # told once, not every run
    ask = waiting(cli)
    assert ask is not None and ask["ask"] == "supply a new key" and ask["since"]
    assert NAME in cli("status", "-q").out + cli("status", "-q").err

    # Refused keys change nothing.
    for bad, why in [
        ("acme_short", "shorter than 16 characters"),
        ("zzzz_" + "a" * 24, "does not match the pattern"),
    ]:
        refused = cli("supply", NAME, stdin=bad + "\n")
        assert refused.code == 2 and why in refused.err, refused.err
        assert len(refused.err.strip().splitlines()) == 1
    assert states(backend) == {}

    done = cli("supply", NAME, stdin=KEYS[0] + "\n")
    assert done.code == 0, done.out + done.err
    assert states(backend) == {1: "current"}
    assert waiting(cli) is None
    assert cli("get", NAME).out.strip() == KEYS[0]

    # The next rotation: the person runs rotate, then supplies; the old key is theirs
    # to revoke, and the rotation waits for confirm.
    assert cli("rotate", NAME).code == 3
    used = cli("supply", NAME, stdin=KEYS[0] + "\n")
    assert used.code == 2 and "this key was used before" in used.err
    assert cli("supply", NAME, stdin=KEYS[1] + "\n").code == 3  # promoted; revoke v1
    assert states(backend) == {1: "previous", 2: "current"}
    ask = waiting(cli)
    assert ask is not None and ask["ask"].startswith("revoke ")
    assert "delete it on the same page" in ask["instructions"]
    again = cli("supply", NAME, stdin=KEYS[2] + "\n")
    assert again.code == 2 and "does not wait for a key" in again.err
    assert cli("run").code == 3 and states(backend) == {1: "previous", 2: "current"}
    confirmed = cli("confirm", NAME)
    assert confirmed.code == 0, confirmed.out + confirmed.err
    assert states(backend) == {1: "retired", 2: "current"}
    assert waiting(cli) is None
    nothing = cli("confirm", NAME)
    assert nothing.code == 2 and "nothing to confirm" in nothing.err

    # The canary: no supplied key in any output (but get's), file or record.
    assert_no_value_leaked(cli, set(KEYS))


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_reminders_then_a_critical_escalation_past_the_deadline(
    cli: Cli, backend: Backend, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    configure(backend, events, remind="1s", deadline="3s")
    assert cli("run").code == 3
    assert told(events) == [("person-needed", "warning")]
    time.sleep(1.2)
    assert cli("run").code == 3
    assert told(events)[-1] == ("person-reminder", "warning")
    time.sleep(2.0)
    assert cli("run").code == 3
    assert ("person-overdue", "critical") in told(events)
    overdue = [k for k in told(events) if k[0] == "person-overdue"]
    time.sleep(1.2)
    cli("run")
    assert [k for k in told(events) if k[0] == "person-overdue"] == overdue  # escalated once
