"""``-q`` before or after every reporting command prints only what needs attention,
and nothing when nothing does (certbot's way, so cron mails only then)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from .conftest import Cli

NAME = "partners/acme"
CALM = "partners/calm"


@pytest.fixture
def incident(cli: Cli) -> Cli:
    """CALM rotated twice, nothing wrong; NAME had an emergency (its old key compromised)."""
    assert cli("rotate", NAME, CALM).code == 0
    assert cli("rotate", CALM, "--propagation", "0s", "--overlap", "0s", "--wait").code == 0
    assert cli("emergency", NAME, "--yes", "--reason", "leaked in a log").code == 0
    return cli


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize(
    "command",
    [("usage", CALM), ("history", CALM), ("audit", "show", "--credential", CALM), ("status", CALM)],
    ids=["usage", "history", "audit-show", "status"],
)
def test_quiet_prints_nothing_when_nothing_needs_attention(
    incident: Cli, command: tuple[str, ...], where: str
) -> None:
    args = ("-q", *command) if where == "before" else (*command, "-q")
    run = incident(*args)
    assert (run.code, run.out, run.err) == (0, "", "")
    assert incident(*command).out.strip(), "without -q it does print"


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_history_shows_the_emergency_and_the_compromised_key(
    incident: Cli, where: str
) -> None:
    args = ("-q", "history", NAME) if where == "before" else ("history", NAME, "-q")
    lines = incident(*args).out.splitlines()
    doc = json.loads(incident("-o", "json", "history", NAME).out)
    old = next(v for v in doc["versions"] if v["compromised"])
    emergency = next(r for r in doc["rotations"] if r["kind"] == "emergency")
    assert lines[0] == f"{NAME}: v{old['number']} ({old['key_id']}) compromised"
    assert len(lines) == 2
    assert lines[1].startswith(f"{NAME}: {emergency['started']}  emergency ")
    assert lines[1].endswith(" - leaked in a log")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_audit_show_keeps_only_the_emergency(incident: Cli, where: str) -> None:
    args = ("-q", "audit", "show") if where == "before" else ("audit", "show", "-q")
    run = incident(*args)
    everything = json.loads(incident("-o", "json", "audit", "show").out)["records"]
    wanted = [r for r in everything if "emergency" in r["action"]]
    assert wanted and len(wanted) < len(everything)
    rows = [line for line in run.out.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == [str(r["seq"]) for r in wanted]
    quiet_json = json.loads(incident("-q", "-o", "json", "audit", "show").out)["records"]
    assert quiet_json == wanted


def test_quiet_usage_names_a_compromised_key_still_presented(cli: Cli) -> None:
    """An access-log probe sees the compromised key after the emergency: that row,
    and nothing about the keys in good standing."""
    log = cli.root / "access.log"
    log.write_text("")
    (cli.cwd / "rotatectl.toml").write_text(
        f'[credentials."{NAME}"]\nusage = {{ type = "access-log", path = "{log}" }}\n'
    )
    assert cli("rotate", NAME).code == 0
    old = json.loads(cli("-o", "json", "status", NAME).out)["credentials"][0]["versions"][0]
    assert cli("emergency", NAME, "--yes", "--reason", "leak").code in (0, 3)
    assert cli("-q", "usage", NAME).out == ""
    seen = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.write_text(json.dumps({"ts": seen, "key_id": old["key_id"], "client": "ci"}) + "\n")
    run = cli("usage", NAME, "-q")
    rows = [line for line in run.out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and old["key_id"] in rows[0] and "ci" in rows[0], run.out
