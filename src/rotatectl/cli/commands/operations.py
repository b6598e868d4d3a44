"""``emergency``, ``rollback`` and ``abort``: an operator's interventions on one credential."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ...errors import UsageError
from ..common import (
    NameArgument,
    OutputOption,
    QuietOption,
    ReasonOption,
    command_app,
    duration,
    finish,
    opts,
    runner,
    validated_one,
    workspace,
)

if TYPE_CHECKING:
    from ...engine import Result, Runner, Target

app = command_app()


@app.command()
def emergency(
    ctx: typer.Context,
    name: NameArgument,
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", help="Why (goes into the incident record).", metavar="TEXT"),
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    propagation: Annotated[
        str | None,
        typer.Option(help="Wait this long before promoting (default: none).", metavar="DURATION"),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """The key leaked: publish and promote a new key now, and retire the old one now."""
    from ... import services

    started = time.monotonic()
    o = opts(ctx, output, quiet)
    prop = duration("--propagation", propagation)

    def confirm(question: str) -> None:
        if yes:
            return
        if not sys.stdin.isatty():
            raise UsageError("emergency needs --yes when not run on a terminal")
        typer.confirm(question, abort=True)

    with workspace(o) as ws:
        result = services.emergency(
            ws, runner(o, ws), validated_one(name), reason, prop, started=started, confirm=confirm
        )
    if result.revoked_after is not None and o.output == "table":
        took = f"{result.revoked_after:.2f}s"
        result.steps.append(f"old key revoked {took} after the command started")
    finish(o, [result], summary=False)


@app.command()
def rollback(
    ctx: typer.Context,
    name: NameArgument,
    reason: ReasonOption = "",
    to: Annotated[
        int | None,
        typer.Option(
            "--to", help="Go back to this previous key (any key of the window).", metavar="N"
        ),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Re-promote the key the latest rotation replaced (while it is not destroyed)."""
    _operate(ctx, output, quiet, name, lambda run, target: run.rollback(target, reason, to))


@app.command()
def abort(
    ctx: typer.Context,
    name: NameArgument,
    reason: ReasonOption = "",
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Cancel the in-flight rotation before promotion and revoke its new key."""
    _operate(ctx, output, quiet, name, lambda run, target: run.abort(target, reason))


def _operate(
    ctx: typer.Context,
    output: str | None,
    quiet: bool,
    name: str,
    operation: Callable[[Runner, Target], Result],
) -> NoReturn:
    """Run one runner operation on one credential and finish with its exit code."""
    o = opts(ctx, output, quiet)
    with workspace(o) as ws:
        result = operation(runner(o, ws), ws.target(validated_one(name)))
    finish(o, [result], summary=False)
