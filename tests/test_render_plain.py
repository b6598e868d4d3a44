"""The plain writers in cli/render.py print exactly what rich prints to a pipe.

``status`` and ``run`` skip rich (its import and its per-cell layout) when the
output is not a terminal; these tests hold that output byte for byte to what
rich's own Table and Text produce for the same cells.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rotatectl.cli import render
from rotatectl.engine import Outcome, Result
from rotatectl.model import Phase

HEADERS = ("credential", "version", "state", "key id", "age", "note")


class Pipe(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return False


def rich_table(rows: list[tuple[str, ...]], width: int) -> str:
    table = Table(title=None, show_lines=False, header_style="bold")
    for column in HEADERS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out = Pipe()
    Console(file=out, highlight=False, soft_wrap=True, width=width).print(table)
    return out.getvalue()


cell = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
rows_strategy = st.lists(st.tuples(*[cell] * len(HEADERS)), min_size=1, max_size=8)


@pytest.fixture(autouse=True)
def _no_terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


@settings(max_examples=300, deadline=None)
@given(rows=rows_strategy, width=st.integers(min_value=20, max_value=250))
def test_plain_table_is_rich_table_or_declines(rows: list[tuple[str, ...]], width: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", str(width))
        out = Pipe()
        if render.plain_table(HEADERS, rows, out):
            widest = rich_table(rows, 10_000)
            if max(len(line) for line in widest.splitlines()) <= width:
                assert out.getvalue() == rich_table(rows, width)
            else:  # to a pipe a wide table is printed whole, as rich would with room
                assert out.getvalue() == widest


def test_plain_table_declines_markup_and_terminals_and_never_wraps_a_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    ok = [("a", "v1", "current", "abc", "1s", "due in 3d")]
    assert render.plain_table(HEADERS, ok, Pipe())
    assert not render.plain_table(HEADERS, [("a", "[bold]x", "", "", "", "")], Pipe())
    assert not render.plain_table(HEADERS, [("a", ":smile:", "", "", "", "")], Pipe())
    wide, out = [("a" * 90, "", "", "", "", "")], Pipe()
    assert render.plain_table(HEADERS, wide, out) and "a" * 90 in out.getvalue()
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not render.plain_table(HEADERS, ok, Pipe())


def test_results_print_like_rich(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    results = [
        Result("a", Outcome.IDLE, "nothing due", until=now + timedelta(days=3)),
        Result("b", Outcome.WAITING, "overlap", phase=Phase.OVERLAP, until=now + timedelta(1)),
        Result("c", Outcome.FAILED, "publish: boom", steps=["started"], warnings=["w"]),
        Result("d", Outcome.DONE, "done", steps=["published v2", "promoted v2"]),
    ]
    render.print_results(results, now, "table", quiet=False, summary=True)
    plain = capsys.readouterr()

    # What the rich path prints (the code before the plain writer, verbatim).
    out, err = Pipe(), Pipe()
    rich_out = Console(file=out, highlight=False, soft_wrap=True)
    rich_err = Console(file=err, highlight=False, soft_wrap=True)
    for r in results:
        loud = render.is_loud(r)
        for step in r.steps:
            rich_out.print(Text(f"{r.credential}: {step}", "dim"))
        for warning in r.warnings:
            rich_err.print(Text(f"{r.credential}: warning: {warning}", "yellow"))
        (rich_err if loud else rich_out).print(render.result_line(r, now))
    rich_out.print("summary: 1 done, 1 failed, 1 idle, 1 waiting")
    assert plain.out == out.getvalue()
    assert plain.err == err.getvalue()
