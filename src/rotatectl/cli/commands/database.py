"""``db init``: set up, once, what a database issuer needs on the server (roles, grants)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..common import NameArgument, audit_log, command_app, opts, validated_one, workspace

app = command_app(name="db", help="Set up a database credential's issuer side.")


@app.command("init")
def db_init(
    ctx: typer.Context,
    name: NameArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what it would run; change nothing.")
    ] = False,
) -> None:
    """Create what credential NAME's issuer needs on the server (for `postgres`: the
    second role, the group role, the memberships) and move the roles' own table
    grants to the group. Prints every statement; --dry-run only prints them."""
    from ... import services

    o = opts(ctx)
    with workspace(o) as ws:
        steps = services.db_init(ws, validated_one(name), dry_run, lambda: audit_log(o, ws.config))
    if not steps:
        typer.echo(f"{name}: nothing to set up")
        return
    typer.echo(f"{name}: {'would run' if dry_run else 'ran'}:")
    for step in steps:
        typer.echo(f"  {step};")
