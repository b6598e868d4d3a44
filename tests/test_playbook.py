"""``examples/ops/incident-playbook.md`` runs as written, on the local store.

Its revoke command (the ``sh`` block), then each command of its checklist, and
its claim about rollback: the commands are read from the playbook itself.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from .conftest import Cli

PLAYBOOK = Path(__file__).resolve().parents[1] / "examples" / "ops" / "incident-playbook.md"


def commands(text: str) -> list[list[str]]:
    """Every ``rotatectl ...`` command line of the playbook (its code block, then the
    inline commands with a credential), in order, as argv without ``rotatectl``."""
    found = [line for line in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)[0].splitlines()]
    found += re.findall(r"`(rotatectl \w+ [\w/.-]+)`", text)
    return [shlex.split(line)[1:] for line in found]


def test_the_incident_playbook_runs_as_written(cli: Cli) -> None:
    text = PLAYBOOK.read_text()
    argvs = commands(text)
    assert [a[0] for a in argvs] == ["emergency", "status", "history", "usage"]
    name = argvs[0][1]
    assert cli("rotate", name).code == 0
    leaked = json.loads(cli("-o", "json", "status", name).out)["credentials"][0]["versions"][0]

    revoke = cli(*argvs[0])
    assert revoke.code == 0, revoke.err
    assert re.search(r"old key revoked \d+\.\d\ds after the command started", revoke.out)

    # The checklist: each command runs, and says what the playbook says it shows.
    status = cli(*argvs[1])
    assert status.code == 0
    rows = [line.split("│")[1:-1] for line in status.out.splitlines() if "│" in line]
    states = {cells[3].strip(): cells[2].strip() for cells in rows}
    assert states[leaked["key_id"]] == "retired"
    assert list(states.values()).count("current") == 1
    history = cli(*argvs[2])
    assert history.code == 0
    assert "emergency" in history.out and "INC-1234: key pasted in #general" in history.out
    assert cli(*argvs[3]).code == 0

    # "rotatectl rollback refuses with exit code 2".
    assert "`rotatectl rollback` refuses with exit code 2" in text
    rollback = cli("rollback", name)
    assert rollback.code == 2
    assert rollback.err.startswith("rotatectl: error: ") and "compromised" in rollback.err
