"""What every Typer command module shares: the option types, shell completion, and
the steps between parsing and the service layer (from :mod:`.context`, which the
entry point's fast path uses without Typer), ending in ``typer.Exit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from . import spec
from .context import (
    Options,
    audit_log,
    check_output,
    duration,
    load,
    report,
    runner,
    validated,
    validated_one,
    workspace,
)

if TYPE_CHECKING:
    from ..engine import Result

__all__ = [
    "DryRunOption",
    "NameArgument",
    "NamesArgument",
    "OptionalNamesArgument",
    "Options",
    "OutputOption",
    "QuietOption",
    "ReasonOption",
    "audit_log",
    "check_output",
    "command_app",
    "complete_names",
    "duration",
    "exit_with",
    "finish",
    "load",
    "opts",
    "runner",
    "validated",
    "validated_one",
    "workspace",
]


def complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: the credential names (declared, else those in the default
    store) that start with ``incomplete``; none when the config cannot be loaded."""
    from ..config import load_config
    from ..workspace import Workspace

    config = ctx.find_root().params.get("config")
    try:
        with Workspace(load_config(config)) as ws:
            return [n for n in ws.names() if n.startswith(incomplete)]
    except Exception:  # a broken config or an unreachable store: offer nothing, print nothing
        return []


OutputOption = Annotated[str | None, spec.OUTPUT.typer(show_default=False)]
QuietOption = Annotated[bool, spec.QUIET.typer()]
NameArgument = Annotated[
    str, typer.Argument(help="Credential name.", metavar="NAME", autocompletion=complete_names)
]
NamesArgument = Annotated[
    list[str],
    typer.Argument(
        help="Credential names.",
        metavar="NAME...",
        autocompletion=complete_names,
        show_default=False,
    ),
]
OptionalNamesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Credential names (default: all).",
        metavar="[NAME]...",
        autocompletion=complete_names,
        show_default=False,
    ),
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why.", metavar="TEXT")]
DryRunOption = Annotated[bool, spec.DRY_RUN.typer()]


def opts(ctx: typer.Context, output: str | None = None, quiet: bool = False) -> Options:
    """The global options, with a command's own --output/--quiet taking precedence."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    if output is not None:
        obj.output = check_output(output)
    obj.quiet = obj.quiet or quiet
    return obj


def finish(
    opts: Options,
    results: list[Result],
    *,
    summary: bool,
    printed: bool = False,
    run_mode: bool = False,
) -> NoReturn:
    """Print ``results`` (unless the display already did) and exit with their code."""
    raise typer.Exit(report(opts, results, summary=summary, printed=printed, run_mode=run_mode))


def exit_with(code: int) -> None:
    """End the command with ``code`` (nothing when it is 0)."""
    if code:
        raise typer.Exit(code)


def command_app(**settings: object) -> typer.Typer:
    """The Typer app a command module registers its commands on."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, **settings)  # type: ignore[arg-type]
