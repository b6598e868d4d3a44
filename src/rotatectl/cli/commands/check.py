"""``check`` (config, stores, notifiers, drift) and ``plugins`` (installed adapters)."""

from __future__ import annotations

from typing import Annotated

import typer

from ...errors import UsageError
from ..common import (
    OptionalNamesArgument,
    OutputOption,
    QuietOption,
    audit_log,
    command_app,
    exit_with,
    opts,
    validated,
    workspace,
)

app = command_app()


@app.command()
def check(
    ctx: typer.Context,
    names: OptionalNamesArgument = None,
    adopt: Annotated[
        bool, typer.Option("--adopt", help="Drift found: take the store's state as the truth.")
    ] = False,
    restore: Annotated[
        bool, typer.Option("--restore", help="Drift found: put rotatectl's state back.")
    ] = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Validate the config; reach every store and notifier; report missing permissions,
    unset notifier credentials and drift.

    Drift (a store changed behind rotatectl's back) exits 3 and blocks rotations
    of that credential until --adopt or --restore resolves it; both are audited.
    """
    from ... import services
    from ..render import print_check

    o = opts(ctx, output, quiet)
    if adopt and restore:
        raise UsageError("choose one of --adopt and --restore")
    how = "adopt" if adopt else "restore" if restore else None
    with workspace(o) as ws:
        checked = validated(names or [])
        items = services.check(ws, checked, how, lambda: audit_log(o, ws.config))
    print_check(ws.config, items, o.output, quiet=o.quiet)
    exit_with(services.check_exit(items))


@app.command()
def plugins(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the installed adapters (stores, issuers, probes, notifiers)."""
    from ... import registry
    from ..render import print_plugins

    o = opts(ctx, output)
    print_plugins({kind: registry.available(kind) for kind in registry.GROUPS}, o.output)
