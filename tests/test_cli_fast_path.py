"""The entry point's fast paths (``--version``, plain ``status``) answer exactly as Typer does.

``rotatectl.cli.main`` runs these without loading Typer; ``rotatectl.cli.app.main``
is the Typer app. For each command line, both must print the same and exit alike.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rotatectl.cli.main import _plain_status

from .conftest import Cli

TYPER = "import sys; from rotatectl.cli.app import main; sys.argv[0] = 'rotatectl'; main()"


def via_typer(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TYPER, *args],
        cwd=cli.cwd,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["status"], (None, "table", [], False)),
        (["status", "a", "b"], (None, "table", ["a", "b"], False)),
        (["-c", "x.toml", "status", "a", "-o", "json"], ("x.toml", "json", ["a"], False)),
        (["--config=x.toml", "-q", "--output=json", "status"], ("x.toml", "json", [], True)),
        (["-o", "json", "status", "--output", "table"], (None, "table", [], False)),
        (["status", "-q"], (None, "table", [], True)),
        (["status", "a", "--quiet"], (None, "table", ["a"], True)),
        (["status", "-o", "status"], None),  # not a valid output: Typer says so
        (["-o", "yaml", "status", "-o", "json"], None),
        (["status", "--help"], None),
        (["status", "-c", "x.toml"], None),
        (["status", "--", "a"], None),
        (["-o", "status"], None),
        (["run"], None),
        (["status", "-o"], None),
        ([], None),
    ],
)
def test_only_plain_status_command_lines_take_the_fast_path(
    argv: list[str], parsed: tuple[str | None, str, list[str], bool] | None
) -> None:
    assert _plain_status(argv) == parsed


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("status",),
        ("status", "-o", "json"),
        ("-o", "json", "status", "a"),
        ("status", "a", "nobody"),
        ("status", "a//b"),
        ("-c", "missing.toml", "status"),
        ("status", "-o", "yaml"),
        ("status", "-q"),
        ("-q", "status", "-o", "json"),
    ],
)
def test_fast_path_answers_as_typer_does(cli: Cli, args: tuple[str, ...]) -> None:
    assert cli("rotate", "a", "b/c").code == 0
    fast = cli(*args)
    slow = via_typer(cli, *args)
    assert (fast.code, fast.err) == (slow.returncode, slow.stderr)
    assert ages(fast.out) == ages(slow.stdout)


def ages(text: str) -> str:
    """The table with its ages ("3s", "1m2s") masked: the two runs are a moment apart."""
    return re.sub(r"[─━ ]+", " ", re.sub(r"\b(\d+[dhms])+\b", "AGE", text))
