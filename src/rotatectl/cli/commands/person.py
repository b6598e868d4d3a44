"""``supply`` and ``confirm``: a person's part in a ``manual`` issuer's rotation."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from ...errors import UsageError
from ..common import (
    NameArgument,
    OutputOption,
    QuietOption,
    command_app,
    finish,
    opts,
    runner,
    validated_one,
    workspace,
)

app = command_app()


@app.command()
def supply(
    ctx: typer.Context,
    name: NameArgument,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="When the service expires the key (2027-03-01, or an ISO time with a zone).",
            metavar="DATE",
        ),
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Hand over the new key of credential NAME (a `manual` issuer) that you created at
    the service: read from stdin, or a hidden prompt on a terminal (never an
    argument). It is checked (pattern, length, not a key used before), then the
    rotation goes on: published, propagated, promoted, the old key gated on usage.
    Starts a rotation when none is in flight."""
    from ... import services

    o = opts(ctx, output, quiet)
    until = _expiry(expires)
    key = _read_key()
    with workspace(o) as ws:
        result = services.supply(ws, runner(o, ws), validated_one(name), key, until)
    del key
    finish(o, [result], summary=False)


@app.command()
def confirm(
    ctx: typer.Context,
    name: NameArgument,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Say you did what credential NAME's rotation asked of you (revoked the old key at
    the service, or re-enabled one), so it goes on."""
    from ... import services

    o = opts(ctx, output, quiet)
    with workspace(o) as ws:
        result = services.confirm(ws, runner(o, ws), validated_one(name))
    finish(o, [result], summary=False)


def _read_key() -> str:
    """The key from a hidden prompt on a terminal, else the whole of stdin (one line;
    its final line break dropped)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("new key (not echoed): ")
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--expires: expected a date (2027-03-01) or ISO time, got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
