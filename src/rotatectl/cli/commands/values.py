"""``get`` and ``exec``: the only commands that reveal a key value."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated

import typer

from ...errors import UsageError
from ..common import NameArgument, audit_log, command_app, opts, validated_one, workspace

app = command_app()


@app.command()
def get(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[
        int | None,
        typer.Option(
            "--version-number",
            "-V",
            help="A version number instead of the current one.",
            metavar="N",
        ),
    ] = None,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Print the key even when stdout is a terminal.")
    ] = False,
    field: Annotated[
        str | None,
        typer.Option(
            "--field", "-f", help="Of a JSON secret: print only this field.", metavar="FIELD"
        ),
    ] = None,
) -> None:
    """Print the current value to stdout (the only command besides exec that reveals one).

    A JSON secret prints as its document, or one field of it with --field (a string
    as it is, anything else as JSON). To a pipe or file it prints as asked; to a
    terminal only with --reveal, so a key does not end up in scrollback or a screen
    share by accident.
    """
    from ... import services

    o = opts(ctx)
    if sys.stdout.isatty() and not reveal:
        raise UsageError("refusing to print a key to a terminal; pipe it, or add --reveal")
    with workspace(o) as ws:
        value = services.read_value(
            ws, validated_one(name), version, "get", audit_log(o, ws.config)
        )
    if field is not None:
        value = services.field_values(name, value, [field])[0]
    sys.stdout.write(value + "\n")


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    name: NameArgument,
    command: Annotated[
        list[str], typer.Argument(help="The command to run, after --.", metavar="-- COMMAND...")
    ],
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="The variable to set (default ROTATECTL_KEY); of a JSON secret, FIELD=VAR "
            "sets VAR to that field (repeat for several).",
            metavar="VAR|FIELD=VAR",
        ),
    ] = None,
) -> None:
    """Run COMMAND with the current value in an environment variable (never in argv);
    of a JSON secret, its fields in variables of their own with --env FIELD=VAR."""
    from ... import services

    o = opts(ctx)
    wanted = exec_variables(env or ["ROTATECTL_KEY"])
    with workspace(o) as ws:
        value = services.read_value(ws, validated_one(name), None, "exec", audit_log(o, ws.config))
    fields = [f for f in wanted.values() if f is not None]
    found = dict(zip(fields, services.field_values(name, value, fields), strict=True))
    program = shutil.which(command[0])
    if program is None:
        from ...errors import CommandNotFoundError

        raise CommandNotFoundError(f"exec: command not found: {command[0]}")
    child_env = dict(os.environ)
    for var, field in wanted.items():
        child_env[var] = value if field is None else found[field]
    del value, found
    sys.stdout.flush()
    # Replaces this process (no copy of the value lingers here); no shell is involved.
    os.execve(program, command, child_env)  # noqa: S606


def exec_variables(specs: list[str]) -> dict[str, str | None]:
    """``--env`` values as variable -> field (None: the whole value). UsageError for a
    name that is not a variable name, or a variable named twice."""
    wanted: dict[str, str | None] = {}
    for spec in specs:
        field, sep, var = spec.rpartition("=")
        if not var.isidentifier() or (sep and not field):
            raise UsageError(f"--env: {spec!r} is not VAR or FIELD=VAR with a valid variable name")
        if var in wanted:
            raise UsageError(f"--env: {var} is set twice")
        wanted[var] = field if sep else None
    return wanted
