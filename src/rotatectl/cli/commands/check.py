"""``check`` (config, stores, notifiers, drift), ``issuer-test`` (the issuer contract
against a configured issuer) and ``plugins`` (installed adapters)."""

from __future__ import annotations

from typing import Annotated

import typer

from ...errors import UsageError
from ..common import (
    NameArgument,
    OptionalNamesArgument,
    OutputOption,
    QuietOption,
    audit_log,
    command_app,
    exit_with,
    opts,
    validated,
    validated_one,
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


@app.command("issuer-test")
def issuer_test(
    ctx: typer.Context,
    name: NameArgument,
    scratch: Annotated[
        str | None,
        typer.Option(
            "--credential",
            help="The scratch credential the test keys are made for (default: issuer-test/NAME).",
            metavar="SCRATCH",
        ),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the issuer contract against credential NAME's issuer (a `command` or `http`
    plug-in, or any other) on a scratch credential: create, list, test, disable,
    enable, delete, each checked as rotatectl relies on it. Every key it creates is
    deleted. Exit 0 when every check passes, 1 when one fails."""
    from ...conformance import check_issuer
    from ..render import print_conformance

    o = opts(ctx, output, quiet)
    credential = scratch or f"issuer-test/{name}"
    with workspace(o) as ws:
        checks = check_issuer(ws.issuer(validated_one(name)), credential)
    print_conformance(credential, checks, o.output, quiet=o.quiet)
    exit_with(1 if any(not c.ok for c in checks) else 0)


@app.command()
def plugins(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the installed adapters (stores, issuers, probes, notifiers)."""
    from ... import registry
    from ..render import print_plugins

    o = opts(ctx, output)
    print_plugins({kind: registry.available(kind) for kind in registry.GROUPS}, o.output)
