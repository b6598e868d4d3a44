"""``status``, ``usage`` and ``history``: what rotatectl knows, read-only."""

from __future__ import annotations

import typer

from ..common import (
    NameArgument,
    OptionalNamesArgument,
    OutputOption,
    QuietOption,
    command_app,
    exit_with,
    opts,
    runner,
    validated_one,
    workspace,
)

app = command_app()


@app.command()
def usage(
    ctx: typer.Context,
    name: NameArgument,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """What the usage probe sees for each version, and what the gate will decide."""
    from ..render import print_usage

    o = opts(ctx, output, quiet)
    with workspace(o) as ws:
        target = ws.target(validated_one(name))
        run = runner(o, ws)
        rows, action = run.usage_report(target)
        print_usage(target.name, rows, action, run.clock.now(), o.output, quiet=o.quiet)


@app.command()
def history(
    ctx: typer.Context,
    name: NameArgument,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """A timeline of the credential's versions and rotations."""
    from ...ports import SystemClock
    from ...report import collect_history
    from ..render import print_history

    o = opts(ctx, output, quiet)
    with workspace(o) as ws:
        target = ws.target(validated_one(name))
        found = collect_history(target, SystemClock().now())
    if not found.versions and not found.rotations:
        raise ws.unknown(name)
    print_history(found, o.output, quiet=o.quiet)


@app.command()
def status(
    ctx: typer.Context,
    names: OptionalNamesArgument = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Credentials, versions, states, ages, next due time and in-flight phase."""
    from ..status import run_status

    o = opts(ctx, output, quiet)
    exit_with(run_status(o.config, names or [], o.output, quiet=o.quiet))
