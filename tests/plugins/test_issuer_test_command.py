"""`rotatectl issuer-test` (issue 20 item 3): the issuer contract run against a
configured plug-in on a scratch credential. A plug-in broken in chosen operations is
named operation by operation; a correct one passes every check; every key made is
deleted; nothing secret is printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ..conftest import Cli

# A protocol-1 plug-in keeping its keys in a JSON file; BROKEN (argv) breaks operations.
PLUGIN = r"""
import json, os, secrets, sys
from pathlib import Path

state = Path(sys.argv[1])
broken = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else set()
keys = json.loads(state.read_text()) if state.exists() else {}
req = json.load(sys.stdin)
op, cred = req["operation"], req["credential"]
reply = {}
if op in broken and op in ("delete",):
    print("the admin API said no", file=sys.stderr)
    sys.exit(1)
if op == "create":
    ref = "k" + secrets.token_hex(4)
    value = "sk_live_" + secrets.token_hex(16)
    keys[ref] = {"cred": cred, "version": req["version_id"], "active": True, "value": value}
    reply = {"key": value, "issuer_ref": ref}
    if "create" in broken:
        reply = {"key": value}
elif op == "list":
    reply = {"keys": [
        {"issuer_ref": r, "version_id": None if "list" in broken else k["version"],
         "active": k["active"]}
        for r, k in keys.items() if k["cred"] == cred
    ]}
elif op in ("disable", "enable"):
    if op not in broken and req["issuer_ref"] in keys:
        keys[req["issuer_ref"]]["active"] = op == "enable"
elif op == "delete":
    keys.pop(req["issuer_ref"], None)
elif op == "test":
    if "test" in broken:
        print("not json")
        sys.exit(0)
    found = [k for k in keys.values() if k["value"] == req["key"] and k["active"]]
    reply = {"ok": bool(found), "detail": "accepted" if found else "refused"}
state.write_text(json.dumps(keys))
print(json.dumps(reply))
"""


def configure(cli: Cli, tmp_path: Path, broken: str = "") -> Path:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    state = tmp_path / "keys.json"
    command = [sys.executable, str(script), str(state), *([broken] if broken else [])]
    (cli.cwd / "rotatectl.toml").write_text(
        f"""
[credentials."partners/acme"]
issuer = {{ type = "command", command = {json.dumps(command)}, timeout = "20s" }}
"""
    )
    return state


def values(state: Path) -> list[str]:
    return [k["value"] for k in json.loads(state.read_text()).values()] if state.exists() else []


def test_a_correct_plugin_passes_every_check_and_leaves_no_key(cli: Cli, tmp_path: Path) -> None:
    state = configure(cli, tmp_path)
    run = cli("issuer-test", "partners/acme")
    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["PASS"] * (len(lines) - 1)
    assert len(lines) >= 9
    assert lines[-1] == f"issuer-test/partners/acme: {len(lines) - 1} passed, 0 failed"
    assert json.loads(state.read_text()) == {}  # every key it made is deleted
    as_json = json.loads(cli("issuer-test", "partners/acme", "-o", "json").out)
    assert as_json["ok"] is True and as_json["failed"] == 0
    assert as_json["credential"] == "issuer-test/partners/acme"


@pytest.mark.parametrize(
    ("broken", "failing"),
    [
        ("disable", {"disable"}),
        ("delete", {"delete"}),
        ("list", {"list", "create"}),  # no version ids: nothing tells an orphan apart
        ("test", {"test"}),
        ("disable,delete", {"disable", "delete"}),
    ],
)
def test_a_broken_plugin_is_named_operation_by_operation(
    cli: Cli, tmp_path: Path, broken: str, failing: set[str]
) -> None:
    configure(cli, tmp_path, broken)
    run = cli("issuer-test", "partners/acme", "--credential", "scratch/one")
    assert run.code == 1, run.out + run.err
    report = json.loads(cli("issuer-test", "partners/acme", "-o", "json").out)
    failed = {c["check"].split(":")[0] for c in report["checks"] if not c["ok"]}
    assert failed == failing, report["checks"]
    # The text names each failed operation, with why, on stderr.
    for operation in failing:
        assert f"FAIL  {operation}:" in run.err, run.err


def test_failed_checks_say_why_in_one_line_each(cli: Cli, tmp_path: Path) -> None:
    configure(cli, tmp_path, "delete,test")
    run = cli("issuer-test", "partners/acme", "-q")
    assert run.code == 1
    lines = run.err.splitlines()
    assert any(
        line.startswith("FAIL  delete:") and "exit 1: the admin API said no" in line
        for line in lines
    ), run.err
    assert any(
        line.startswith("FAIL  test:") and "malformed reply: not a JSON object" in line
        for line in lines
    ), run.err
    assert not any(line.startswith("PASS") for line in lines)  # -q: only what failed


def test_a_create_without_a_reference_stops_the_rest(cli: Cli, tmp_path: Path) -> None:
    state = configure(cli, tmp_path, "create")
    run = cli("issuer-test", "partners/acme")
    assert run.code == 1
    assert "FAIL  create: returns a key with a reference - " in run.err
    assert "malformed reply: 'issuer_ref' must be a non-empty string" in run.err
    assert "not run: create failed" in run.err
    for value in values(state):  # the key it did return is never printed
        assert value not in run.out + run.err


def test_no_key_is_printed(cli: Cli, tmp_path: Path) -> None:
    script = tmp_path / "plugin.py"
    configure(cli, tmp_path)
    state = tmp_path / "kept.json"
    # A plug-in that keeps its keys (never deletes) so the test can see them afterwards.
    command = [sys.executable, str(script), str(state), "none"]
    (cli.cwd / "rotatectl.toml").write_text(
        f'[credentials."a"]\nissuer = {{ type = "command", command = {json.dumps(command)} }}\n'
    )
    run = cli("issuer-test", "a")
    assert run.code == 0, run.out + run.err
    for value in values(state):
        assert value not in run.out + run.err


def test_an_unknown_credential_and_a_bad_command_are_one_line_exit_2(
    cli: Cli, tmp_path: Path
) -> None:
    configure(cli, tmp_path)
    run = cli("issuer-test", "nobody/here")
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1, run.err
    (cli.cwd / "rotatectl.toml").write_text(
        '[credentials."a"]\nissuer = { type = "command", command = [] }\n'
    )
    run = cli("issuer-test", "a")
    assert run.code == 2, run.out + run.err
    assert "command: required: the program to run" in run.err
