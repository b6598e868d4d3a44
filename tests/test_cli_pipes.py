"""Output to a pipe never cuts what a script greps for; on a terminal, cells fold.

Two credentials with 60-character names that differ only in their last
character: ``status``, ``history``, ``usage`` and ``audit show`` to a pipe (no
COLUMNS: a cron job's environment) print every name, key id and time whole, on
one line each, so ``grep`` finds each.
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import Cli

STEM = "partners/globex-" + "x" * 43
NAMES = (STEM + "a", STEM + "b")  # 60 characters each
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def piped(cli: Cli) -> Cli:
    cli.env.pop("COLUMNS", None)
    assert all(len(n) == 60 for n in NAMES)
    assert cli("rotate", *NAMES).code == 0
    assert cli("rotate", NAMES[0], "--propagation", "0s", "--overlap", "0s", "--wait").code == 0
    return cli


def _key_ids(cli: Cli, name: str) -> list[str]:
    doc = json.loads(cli("-o", "json", "status", name).out)
    return [v["key_id"] for v in doc["credentials"][0]["versions"]]


def grep(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.mark.parametrize("command", [("status",), ("status", "-q"), ("history",), ("usage",)])
def test_reports_to_a_pipe_print_every_name_and_key_id_whole(
    piped: Cli, command: tuple[str, ...]
) -> None:
    for name in NAMES:
        args = (*command, name) if command[0] != "status" else command
        run = piped(*args)
        assert run.code == 0, run.err
        if "-q" in command:
            assert run.out == ""  # nothing needs attention
            continue
        assert "…" not in run.out
        if command[0] != "usage":  # usage is about one credential; it does not repeat its name
            assert grep(run.out, name), f"{args}: {name} not found whole:\n{run.out}"
        for key_id in _key_ids(piped, name):
            assert grep(run.out, key_id), f"{args}: key id {key_id} not found whole"


def test_status_rows_of_names_differing_in_the_last_character_differ(piped: Cli) -> None:
    out = piped("status").out
    assert len(grep(out, NAMES[0])) == 1 and len(grep(out, NAMES[1])) == 1


def test_audit_show_to_a_pipe_prints_names_ids_and_times_whole(piped: Cli) -> None:
    run = piped("audit", "show")
    assert run.code == 0, run.err
    records = json.loads(piped("-o", "json", "audit", "show").out)["records"]
    assert len(records) >= 8
    for record in records:
        lines = grep(run.out, f" {record['ts']} ")
        assert len(lines) == 1, f"time {record['ts']} not found whole on one line"
        assert record["credential"] in lines[0]
        if record.get("key_id"):
            assert record["key_id"] in lines[0]
    assert "…" not in run.out


def test_history_names_the_end_of_each_rotation_or_that_it_is_still_in_flight(
    piped: Cli,
) -> None:
    assert piped("rotate", NAMES[1]).code == 0  # in flight: waits for propagation
    out = piped("history", NAMES[1]).out
    assert len(grep(out, "still in flight")) == 1
    assert len(grep(piped("history", NAMES[0]).out, "ended 20")) == 2


def test_on_a_terminal_cells_fold_instead_of_being_cut(piped: Cli) -> None:
    terminal = {"TTY_COMPATIBLE": "1", "COLUMNS": "80"}
    for args in (("status",), ("audit", "show"), ("usage", NAMES[0])):
        run = piped(*args, env=terminal)
        assert run.code == 0, run.err
        out = ANSI.sub("", run.out)
        assert "…" not in out, f"{args} cut a cell on an 80-column terminal"
        table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
        assert table and max(len(line) for line in table) <= 80
    # The folded name is all there, its pieces in the first column's cells.
    out = ANSI.sub("", piped("status", NAMES[0], env=terminal).out)
    firsts = "".join(line.split("│")[1].strip() for line in out.splitlines() if "│" in line)
    assert NAMES[0] in firsts


@pytest.mark.parametrize("command", [("status",), ("run", "--dry-run"), ("audit", "show")])
def test_json_prints_each_entry_of_a_list_on_a_line_of_its_own(
    piped: Cli, command: tuple[str, ...]
) -> None:
    """`-o json` is one document any parser reads, with each credential (result,
    record) on one line: `grep NAME` finds that entry whole, and it parses alone."""
    run = piped("-o", "json", *command)
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert isinstance(doc, dict)
    lines = run.out.splitlines()
    entries = [e for v in doc.values() if isinstance(v, list) for e in v]
    assert entries, doc
    for entry in entries:
        alone = [line for line in lines if _parses(line) == entry]
        assert len(alone) == 1, (entry, run.out)
    # "{", a line a field, two more for a non-empty list's brackets, "}".
    fields = sum(len(v) + 2 if isinstance(v, list) and v else 1 for v in doc.values())
    assert len(lines) == 2 + fields, run.out


def _parses(line: str) -> object:
    try:
        return json.loads(line.strip().rstrip(","))
    except json.JSONDecodeError:
        return None
