"""``rotate`` and ``run``: start, follow and advance rotations."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from ...errors import RotatectlError
from .. import spec
from ..common import (
    DryRunOption,
    NamesArgument,
    OutputOption,
    QuietOption,
    command_app,
    duration,
    exit_with,
    finish,
    opts,
    runner,
    workspace,
)

if TYPE_CHECKING:
    from ...engine import Result, Target

app = command_app()


@app.command()
def rotate(
    ctx: typer.Context,
    names: NamesArgument,
    wait: Annotated[
        bool,
        typer.Option(f"{spec.WAIT.flags[0]}/{spec.NO_WAIT.flags[0]}", help=spec.WAIT.help),
    ] = False,
    propagation: Annotated[str | None, spec.PROPAGATION.typer()] = None,
    overlap: Annotated[str | None, spec.OVERLAP.typer()] = None,
    dry_run: DryRunOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Start a rotation for each NAME, or continue the one in flight (never both).

    --overlap/--propagation apply to a rotation in flight too, or are refused.
    """
    from ..rotate import run_rotate

    o = opts(ctx, output, quiet)
    exit_with(
        run_rotate(o, names, wait=wait, propagation=propagation, overlap=overlap, dry_run=dry_run)
    )


@app.command()
def run(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, max=64, help="Credentials in parallel.", metavar="N"),
    ] = 1,
    jitter: Annotated[
        str | None,
        typer.Option(
            help="Before starting, sleep a random time up to this (e.g. 5m; default: no "
            "sleep), unless on a terminal.",
            metavar="DURATION",
        ),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """The cron entry: advance every in-flight rotation, start due ones, destroy expired keys.

    Never sleeps through an overlap: it does what is possible now and exits.
    Each credential is isolated: one failing does not stop the others.
    """
    from ...engine import fleet
    from ...model import Outcome, Result

    o = opts(ctx, output, quiet)
    spread = duration("--jitter", jitter)
    if spread and not dry_run and not sys.stdin.isatty():
        import secrets

        # Many hosts' cron fire at the same second; spreading them spares the store.
        time.sleep(secrets.randbelow(int(spread.total_seconds() * 1000) + 1) / 1000)
    with workspace(o) as ws:
        work: list[Target | Result] = []
        for name in ws.names():
            try:
                work.append(ws.target(name))
            except RotatectlError as exc:
                work.append(Result(name, Outcome.FAILED, str(exc)))
        results = fleet.run(runner(o, ws), work, jobs=jobs, dry_run=dry_run)
        finish(o, results, summary=True, run_mode=True)
