"""Keys that expire (issue 20 item 5), through the CLI on the local store, moto_server
and OpenBao: a key supplied with `--expires` keeps its expiry in every store; `run`
starts the next rotation `renew_before` it; `status` shows it; an expiry sooner than
a rotation takes (propagation + overlap) is an attention (exit 3) while there is still
time to act."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Cli

from .conftest import NAME, STORES, Backend
from .test_operator_flows import log_notifier

KEYS = ["acme_" + c * 24 for c in "abcdef"]


def configure(backend: Backend, overlap: str = "1h", renew_before: str = "14d") -> None:
    events = backend.cli.root / "events.jsonl"
    (backend.cli.cwd / "rotatectl.toml").write_text(
        f"""[defaults]
store = "{backend.table}"
propagation = "0s"
overlap = "{overlap}"
renew_before = "{renew_before}"
max_age = "90d"
notify = ["log"]

{backend.store_toml(None)}
{log_notifier(events)}
[credentials."{NAME}"]
issuer = {{ type = "manual", owner = "ops" }}
"""
    )


def current(cli: Cli) -> dict[str, object]:
    status = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]
    found = [v for v in status["versions"] if v["state"] == "current"]
    assert len(found) == 1, status
    return {**found[0], "next_due": status["next_due"]}


@pytest.mark.parametrize("backend", STORES, indirect=True)
def test_run_renews_a_key_renew_before_its_expiry_and_status_shows_it(
    cli: Cli, backend: Backend
) -> None:
    configure(backend)
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    supplied = cli("supply", NAME, "--expires", expires.isoformat(), stdin=KEYS[0])
    assert supplied.code == 0, supplied.out + supplied.err
    v1 = current(cli)
    assert datetime.fromisoformat(str(v1["expires"]).replace("Z", "+00:00")) == expires
    # Due renew_before (14d) ahead of the expiry, not at max_age (90d).
    due = datetime.fromisoformat(str(v1["next_due"]).replace("Z", "+00:00"))
    assert due == expires - timedelta(days=14)
    table = cli("status", NAME).out
    assert "expires in 29d" in table or "expires in 30d" in table, table
    assert cli("run").code == 0  # renewal due in 16 days: nothing to do
    assert json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]["in_flight"] is False

    # renew_before longer than the 30 days left: run starts the renewal at once.
    configure(backend, renew_before="31d")
    run = cli("run")
    assert run.code == 3, run.out + run.err  # the manual issuer now waits for a person
    assert "started scheduled rotation" in run.out and "supply" in run.err


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_an_expiry_sooner_than_a_rotation_takes_is_an_attention(cli: Cli, backend: Backend) -> None:
    # renew_before (1h) would start the renewal 19h from now, but a rotation takes
    # 2 days (the overlap): cron says so now, while there is time to act by hand.
    configure(backend, overlap="2d", renew_before="1h")
    soon = (datetime.now(UTC) + timedelta(hours=20)).replace(microsecond=0)
    assert cli("supply", NAME, "--expires", soon.isoformat(), stdin=KEYS[0]).code == 0
    run = cli("run")
    assert run.code == 3, run.out + run.err
    assert "v1 (" in run.err and f"expires at {soon:%Y-%m-%d %H:%M}Z" in run.err, run.err
    assert "sooner than a rotation takes (propagation 0s + overlap 2d)" in run.err
    # The notifiers hear it too, as an attention event.
    events = [json.loads(line) for line in (cli.root / "events.jsonl").read_text().splitlines()]
    said = [e for e in events if e["event"] == "attention"]
    assert said and "sooner than a rotation takes" in said[-1]["message"], events
    assert json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]["in_flight"] is False
    # With an overlap that fits, the same key is no one's concern yet.
    configure(backend, overlap="1h", renew_before="1h")
    assert cli("run").code == 0


def test_an_invalid_expiry_is_one_line_exit_2(cli: Cli) -> None:
    (cli.cwd / "rotatectl.toml").write_text(
        f'[credentials."{NAME}"]\nissuer = {{ type = "manual" }}\n'
    )
    run = cli("supply", NAME, "--expires", "next tuesday", stdin=KEYS[0])
    assert run.code == 2 and "--expires: expected a date" in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1
