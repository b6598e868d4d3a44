"""``rotate`` and ``run``: start, follow and advance rotations."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from ...errors import RotatectlError
from ..common import (
    DryRunOption,
    NamesArgument,
    OutputOption,
    QuietOption,
    command_app,
    duration,
    finish,
    opts,
    runner,
    validated,
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
        typer.Option(
            "--wait/--no-wait", help="Follow the rotation to the end, or persist and exit."
        ),
    ] = False,
    propagation: Annotated[
        str | None,
        typer.Option(help="Override the propagation delay, e.g. 30s.", metavar="DURATION"),
    ] = None,
    overlap: Annotated[
        str | None, typer.Option(help="Override the overlap, e.g. 24h.", metavar="DURATION")
    ] = None,
    dry_run: DryRunOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Start a rotation for each NAME, or continue the one in flight (never both).

    --overlap/--propagation apply to a rotation in flight too, or are refused.
    """
    from ... import services
    from ...engine.fleet import follow
    from ..follow import TerminalDisplay
    from ..status import print_statuses

    o = opts(ctx, output, quiet)
    prop, over = duration("--propagation", propagation), duration("--overlap", overlap)
    names = validated(names)
    with workspace(o) as ws:
        targets = [ws.target(n) for n in names]
        if not o.quiet:
            for note in services.adhoc_notes(ws, names):
                sys.stderr.write(f"note: {note}\n")
        run = runner(o, ws)
        if dry_run:
            results = [run.rotate(t, propagation=prop, overlap=over, dry_run=True) for t in targets]
            finish(o, results, summary=False)
        display = TerminalDisplay(speak=o.output == "table" and not o.quiet)
        try:
            results = follow(
                run, targets, propagation=prop, overlap=over, wait=wait, display=display
            )
        except KeyboardInterrupt:
            # The session released its lease on the way out; say where each stands.
            from ...errors import Interrupted

            raise Interrupted(services.where_it_stands(ws, names)) from None
        if wait and o.output == "table" and not o.quiet:
            code = print_statuses(ws, names, o.output)
            if code:
                raise typer.Exit(code)
        finish(o, results, summary=True, printed=o.output == "table" and not o.quiet)


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
