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
) -> None:
    """Print the current key to stdout (the only command besides exec that reveals a value).

    To a pipe or file it prints as asked; to a terminal only with --reveal, so a
    key does not end up in scrollback or a screen share by accident.
    """
    from ... import services

    o = opts(ctx)
    if sys.stdout.isatty() and not reveal:
        raise UsageError("refusing to print a key to a terminal; pipe it, or add --reveal")
    with workspace(o) as ws:
        value = services.read_value(
            ws, validated_one(name), version, "get", audit_log(o, ws.config)
        )
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
        str, typer.Option("--env", "-e", help="Environment variable to set.", metavar="VAR")
    ] = "ROTATECTL_KEY",
) -> None:
    """Run COMMAND with the current key in an environment variable (never in argv)."""
    from ... import services

    o = opts(ctx)
    if not env.isidentifier():
        raise UsageError(f"--env: {env!r} is not a valid environment variable name")
    with workspace(o) as ws:
        value = services.read_value(ws, validated_one(name), None, "exec", audit_log(o, ws.config))
    program = shutil.which(command[0])
    if program is None:
        from ...errors import CommandNotFoundError

        raise CommandNotFoundError(f"exec: command not found: {command[0]}")
    child_env = dict(os.environ)
    child_env[env] = value
    sys.stdout.flush()
    # Replaces this process (no copy of the value lingers here); no shell is involved.
    os.execve(program, command, child_env)  # noqa: S606
