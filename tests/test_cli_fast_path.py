"""The entry point's fast path (``--version``, ``status``) answers exactly as Typer does.

``rotatectl.cli.main`` parses these with :func:`rotatectl.cli.spec.parse`, without
loading Typer; ``rotatectl.cli.app.main`` is the Typer app, built from the same
declarations. The differential cases are generated from ``spec``: every option the
fast path reads, in every place and form it reads it, so an option added there gets
its case. Each case first checks that the fast path really takes it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rotatectl.cli import spec
from rotatectl.cli.spec import Parsed, parse

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
        (["status"], Parsed("status")),
        (["status", "a", "b"], Parsed("status", args=["a", "b"])),
        (
            ["-c", "x.toml", "status", "a", "-o", "json"],
            Parsed("status", {"config": "x.toml"}, {"output": "json"}, ["a"]),
        ),
        (
            ["--config=x.toml", "-q", "--output=json", "status"],
            Parsed("status", {"config": "x.toml", "quiet": True, "output": "json"}),
        ),
        (
            ["-o", "json", "status", "--output", "table"],
            Parsed("status", {"output": "json"}, {"output": "table"}),
        ),
        (["status", "-q"], Parsed("status", options={"quiet": True})),
        (["--debug", "status"], Parsed("status", {"debug": True})),
        (["--version"], Parsed("--version", {"version": True})),
        (["-q", "--version", "run"], Parsed("--version", {"quiet": True, "version": True})),
        (["-o", "yaml", "--version"], Parsed("--version", {"output": "yaml", "version": True})),
        (["status", "-o", "status"], None),  # not a valid output: Typer says so
        (["-o", "yaml", "status", "-o", "json"], None),
        (["status", "--help"], None),
        (["status", "-c", "x.toml"], None),  # --config is a global option only
        (["status", "--debug"], None),
        (["status", "--", "a"], None),
        (["status", "-qo", "json"], None),  # combined flags: Typer's to read
        (["status", "--out", "json"], None),  # abbreviated
        (["status", "-ojson"], None),
        (["status", "--quiet=1"], None),
        (["-o", "status"], None),
        (["run"], None),
        (["status", "-o"], None),
        (["--bogus", "--version"], None),
        ([], None),
    ],
)
def test_the_fast_parser_takes_only_what_it_is_sure_of(
    argv: list[str], parsed: Parsed | None
) -> None:
    assert parse(argv) == parsed


def _value(opt: spec.Opt) -> str:
    if opt.choices:
        return opt.choices[-1]
    return "other.toml"  # CONFIG: the file the test writes


def _cases() -> list[tuple[str, ...]]:
    """Every option of the fast path, before and after the command where it is
    declared, in each form (``--long VALUE``, ``--long=VALUE``, ``-s VALUE``)."""
    cases: list[tuple[str, ...]] = []
    places = [("global", spec.GLOBAL), *((cmd, opts) for cmd, opts in spec.FAST.items())]
    for place, opts in places:
        for opt in opts:
            forms: list[tuple[str, ...]] = []
            for flag in opt.flags:
                if not opt.value:
                    forms.append((flag,))
                    continue
                forms.append((flag, _value(opt)))
                if flag.startswith("--"):
                    forms.append((f"{flag}={_value(opt)}",))
            for form in forms:
                if place == "global":
                    cases.append((*form, "status"))
                else:
                    cases.append((place, "a", *form))
    return cases


@pytest.mark.parametrize("args", _cases(), ids=" ".join)
def test_each_option_of_the_fast_path_answers_as_typer_does(
    cli: Cli, args: tuple[str, ...]
) -> None:
    assert parse(list(args)) is not None, "the fast path must take this command line"
    assert cli("rotate", "a", "b/c").code == 0
    # Another set of credentials than the ad hoc ones: a --config ignored shows.
    (cli.cwd / "other.toml").write_text('[credentials."a"]\n[credentials."z"]\n')
    fast = cli(*args)
    slow = via_typer(cli, *args)
    assert fast.code == slow.returncode
    assert fast.err == slow.stderr
    assert ages(fast.out) == ages(slow.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "a", "nobody"),
        ("status", "a//b"),
        ("-c", "missing.toml", "status"),
        ("status", "-o", "yaml"),
        ("-q", "status", "-o", "json"),
        ("-o", "json", "status", "-o", "table", "-q", "a"),
    ],
)
def test_fast_path_answers_as_typer_does_for_errors_and_mixes(
    cli: Cli, args: tuple[str, ...]
) -> None:
    assert cli("rotate", "a", "b/c").code == 0
    fast = cli(*args)
    slow = via_typer(cli, *args)
    assert (fast.code, fast.err) == (slow.returncode, slow.stderr)
    assert ages(fast.out) == ages(slow.stdout)


def ages(text: str) -> str:
    """The table with its ages ("3s", "1m2s") masked: the two runs are a moment apart."""
    return re.sub(r"[─━ ]+", " ", re.sub(r"\b(\d+[dhms])+\b", "AGE", text))
