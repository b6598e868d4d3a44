"""The entry point's fast path (``--version``, ``status``, ``rotate``) answers exactly as
Typer does.

``rotatectl.cli.main`` parses these with :func:`rotatectl.cli.spec.parse`, without
loading Typer; ``rotatectl.cli.app.main`` is the Typer app, built from the same
declarations. The differential cases are generated from ``spec``: every option the
fast path reads, in every place and form it reads it, so an option added there gets
its case. Each case first checks that the fast path really takes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from rotatectl.cli import spec
from rotatectl.cli.spec import Parsed, parse

from .conftest import Cli, CliRun

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
        (["rotate", "a"], Parsed("rotate", args=["a"])),
        (
            ["-q", "rotate", "a", "b", "--wait", "--propagation", "0s", "--overlap=1m"],
            Parsed(
                "rotate",
                {"quiet": True},
                {"wait": True, "propagation": "0s", "overlap": "1m"},
                ["a", "b"],
            ),
        ),
        (
            ["rotate", "a", "--no-wait", "--dry-run", "-o", "json"],
            Parsed(
                "rotate", options={"no_wait": True, "dry_run": True, "output": "json"}, args=["a"]
            ),
        ),
        (["rotate"], None),  # NAME is required: Typer says so
        (["rotate", "a", "--wait", "--no-wait"], None),  # the last wins, in Typer
        (["rotate", "a", "--propagation"], None),
        (["rotate", "a", "--yes"], None),
        (["rotate", "a", "--help"], None),
    ],
)
def test_the_fast_parser_takes_only_what_it_is_sure_of(
    argv: list[str], parsed: Parsed | None
) -> None:
    assert parse(argv) == parsed


def _value(opt: spec.Opt) -> str:
    if opt.choices:
        return opt.choices[-1]
    if opt in (spec.PROPAGATION, spec.OVERLAP):
        return "0s"
    return "other.toml"  # CONFIG: the file the test writes


# A rotation that never waits: --wait then follows it to its end at once.
NO_WAITS = {spec.PROPAGATION: ("--propagation", "0s"), spec.OVERLAP: ("--overlap", "0s")}


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
                elif place == "rotate":
                    rest = [a for o, args in NO_WAITS.items() if o is not opt for a in args]
                    cases.append((place, "a", *form, *rest))
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
    fast, slow = both(cli, *args)
    assert fast.code == slow.returncode
    assert masked(fast.err) == masked(slow.stderr)
    assert masked(fast.out) == masked(slow.stdout)


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
        ("rotate", "a//b"),
        ("rotate", "a", "--propagation", "soon"),
        ("rotate", "a", "--overlap", "9999d"),
        ("-c", "missing.toml", "rotate", "a"),
        ("rotate", "a", "-o", "yaml"),
        ("-o", "json", "rotate", "a", "b/c", "-q", "--propagation", "0s", "--overlap", "0s"),
        ("rotate", "a", "--wait", "--propagation", "0s", "--overlap", "0s", "-q"),
        ("-q", "rotate", "a", "new/one", "--dry-run"),
    ],
)
def test_fast_path_answers_as_typer_does_for_errors_and_mixes(
    cli: Cli, args: tuple[str, ...]
) -> None:
    assert cli("rotate", "a", "b/c").code == 0
    fast, slow = both(cli, *args)
    assert (fast.code, masked(fast.err)) == (slow.returncode, masked(slow.stderr))
    assert masked(fast.out) == masked(slow.stdout)


def both(cli: Cli, *args: str) -> tuple[CliRun, subprocess.CompletedProcess[str]]:
    """``args`` by the fast path, then by Typer, each from the same state: Typer runs
    on a copy of the state directory taken before the fast path changed it."""
    copy = cli.root / f"state-{len(cli.runs)}"
    if cli.state_dir.exists():
        shutil.copytree(cli.state_dir, copy)
    fast = cli(*args)
    saved = cli.env["ROTATECTL_STATE_DIR"]
    cli.env["ROTATECTL_STATE_DIR"] = str(copy)
    try:
        slow = via_typer(cli, *args)
    finally:
        cli.env["ROTATECTL_STATE_DIR"] = saved
    return fast, slow


def masked(text: str) -> str:
    """What differs between two runs a moment apart, masked: ages and durations ("3s",
    "1m2s"), times, rotation ids, key ids and the state directory's name."""
    text = re.sub(r"state-\d+", "state", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "TIME", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "ROTATION", text)
    text = re.sub(r"\(([A-Za-z0-9]{8})\)", "(KEY)", text)
    text = re.sub(r'("key_id": )"[A-Za-z0-9]{8}"', r'\1"KEY"', text)
    text = re.sub(r"│ [A-Za-z0-9]{8} ", "│ KEY ", text)  # the key id column
    return re.sub(r"[─━ ]+", " ", re.sub(r"\b(\d+[dhms])+\b", "AGE", text))
