"""A missing extra (issue 17): `pip install rotatectl` without `[vault]` or `[aws]`
gives one line naming the command that installs it, exit 2 (it was "internal error:
ModuleNotFoundError"), and `check` prints table names and extras whole.

The extra's packages are made uninstalled for the CLI's process the way Python sees
an absent package: a ``sitecustomize`` on its PYTHONPATH blocks their import.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Cli

SHIM = """\
import sys
for name in ("hvac", "boto3", "botocore"):
    sys.modules[name] = None  # import fails as when the package is not installed
"""

CONFIG = """\
[stores.v]
type = "vault"
url = "http://127.0.0.1:1"

[stores.a]
type = "aws-secretsmanager"
region = "us-east-1"

[credentials."x/vault"]
store = "v"

[credentials."x/aws"]
store = "a"
"""

INSTALL = {"x/vault": "pip install 'rotatectl[vault]'", "x/aws": "pip install 'rotatectl[aws]'"}
TABLE = {"x/vault": "[stores.v]", "x/aws": "[stores.a]"}


@pytest.fixture
def bare(cli: Cli, tmp_path: Path) -> Cli:
    """The CLI as after `pip install rotatectl`: no hvac, boto3 or botocore."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    cli.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(shim), cli.env.get("PYTHONPATH", "")) if p
    )
    cli.env["VAULT_TOKEN"] = "s.test-token"
    (cli.cwd / "rotatectl.toml").write_text(CONFIG)
    return cli


@pytest.mark.parametrize("name", sorted(INSTALL))
@pytest.mark.parametrize("command", ["rotate", "status", "get"])
def test_a_missing_extra_is_one_line_naming_its_install_command(
    bare: Cli, name: str, command: str
) -> None:
    run = bare(command, name)
    assert run.code == 2, (run.code, run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rotatectl: error: "), run.err
    assert INSTALL[name] in lines[0] and TABLE[name] in lines[0], lines[0]
    assert "internal error" not in run.err and "Traceback" not in run.err


def test_check_names_every_missing_extra_whole(bare: Cli) -> None:
    run = bare("check")
    assert run.code == 2, (run.code, run.out, run.err)
    for name, install in INSTALL.items():
        lines = [line for line in run.err.splitlines() if f"credential {name}" in line]
        assert lines and install in lines[0] and TABLE[name] in lines[0], run.err


def test_run_names_the_install_command_for_each_credential(bare: Cli) -> None:
    run = bare("run")
    assert run.code == 1, (run.code, run.out, run.err)  # run: a credential failed
    text = run.out + run.err
    for name, install in INSTALL.items():
        assert any(name in line and install in line for line in text.splitlines()), text
