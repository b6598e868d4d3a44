"""Where things are, said by the commands an operator reads first (issue 17): ``status``
names the config file (or that none was found, and where rotatectl looked), the
state directory and the audit log; an unknown credential with no config file says
so; and the help names each argument and value as it is written."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import Cli


def test_status_names_the_config_state_and_audit_log(cli: Cli) -> None:
    assert cli("rotate", "demo/api").code == 0
    none = cli("status")
    xdg = cli.root / "home" / ".config" / "rotatectl" / "rotatectl.toml"
    looked = f"{cli.cwd / 'rotatectl.toml'}, {xdg}"
    assert none.out.splitlines()[-1] == (
        f"config: none found (looked at {looked}); state: {cli.state_dir}; "
        f"audit: {cli.state_dir / 'audit.jsonl'}"
    )
    (cli.cwd / "rotatectl.toml").write_text('[credentials."demo/api"]\n')
    found = cli("-o", "json", "status")
    doc = json.loads(found.out)
    assert (doc["config"], doc["state_dir"], doc["audit_log"]) == (
        str(cli.cwd / "rotatectl.toml"),
        str(cli.state_dir),
        str(cli.state_dir / "audit.jsonl"),
    )
    assert cli("status", "-q").out == ""  # quiet: nothing needs attention, not even this


def test_an_unknown_credential_without_a_config_file_says_none_was_found(cli: Cli) -> None:
    for args in (("emergency", "partners/acme", "--yes", "-r", "leak"), ("history", "x/y")):
        run = cli(*args)
        assert run.code == 2
        assert run.err.count("\n") == 1
        assert "no versions in its store (config file: none found (looked at " in run.err
        assert "name it with --config or $ROTATECTL_CONFIG)" in run.err


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("rotate",), ["Usage: rotatectl rotate [OPTIONS] NAME...", "DURATION", "table|json"]),
        (("status",), ["Usage: rotatectl status [OPTIONS] [NAME]..."]),
        (("exec",), ["Usage: rotatectl exec [OPTIONS] NAME -- COMMAND...", "VAR"]),
        (("emergency",), ["Usage: rotatectl emergency [OPTIONS] NAME", "TEXT", "DURATION"]),
        (("audit", "show"), ["TIME|DURATION", "NAME"]),
        ((), ["FILE", "table|json", "--install-completion", "--show-completion"]),
    ],
)
def test_help_names_arguments_and_values_as_written(
    cli: Cli, command: tuple[str, ...], shown: list[str]
) -> None:
    run = cli(*command, "--help")
    assert run.code == 0
    text = re.sub(r"\s+", " ", run.out)
    for words in shown:
        assert words in text
    assert "<str>" not in text and "<int>" not in text and "{" not in text
