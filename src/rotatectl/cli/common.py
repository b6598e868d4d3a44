"""What every command module shares: the global options, the option types, and the
few steps between parsing and the service layer (load the workspace, build the
runner, finish with the results' exit code).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ..errors import UsageError
from . import spec

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..config import Config
    from ..engine import Result, Runner
    from ..workspace import Workspace


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
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]


@dataclass
class Options:
    """The global options, and the subcommand invoked (the audit log's ``via``)."""

    config: str | None = None
    output: str = "table"
    quiet: bool = False
    debug: bool = False
    invoked: str | None = None


def check_output(output: str) -> str:
    if output not in spec.OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(spec.OUTPUTS)}, not {output!r}")
    return output


def opts(ctx: typer.Context, output: str | None = None, quiet: bool = False) -> Options:
    """The global options, with a command's own --output/--quiet taking precedence."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    if output is not None:
        obj.output = check_output(output)
    obj.quiet = obj.quiet or quiet
    return obj


def duration(option: str, text: str | None) -> timedelta | None:
    """``text`` parsed as a duration (None stays None); UsageError naming ``option``."""
    if text is None:
        return None
    from ..durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from exc


def load(opts: Options) -> Config:
    from ..config import load_config

    return load_config(opts.config)


def workspace(opts: Options) -> Workspace:
    from ..workspace import Workspace

    return Workspace(load(opts))


def audit_log(opts: Options, config: Config) -> AuditLog:
    """``config.audit_log()``, with this invocation's subcommand as the actor's ``via``."""
    return config.audit_log(opts.invoked or "api")


def runner(opts: Options, ws: Workspace) -> Runner:
    from ..engine import Runner
    from ..ports import SystemClock

    return Runner(SystemClock(), audit=audit_log(opts, ws.config))


def validated(names: list[str]) -> list[str]:
    from ..config import validate_name

    return [validate_name(n) for n in names]


def validated_one(name: str) -> str:
    return validated([name])[0]


def finish(
    opts: Options,
    results: list[Result],
    *,
    summary: bool,
    printed: bool = False,
    run_mode: bool = False,
) -> NoReturn:
    """Print ``results`` (unless the display already did) and exit with their code."""
    from ..model import overall_exit
    from ..ports import SystemClock
    from .render import print_results

    # A credential locked by another runner is that runner's to advance: not a failure of cron.
    code = overall_exit(results, locked_is_ok=run_mode)
    if not printed or opts.output == "json":
        print_results(
            results,
            SystemClock().now(),
            opts.output,
            quiet=opts.quiet,
            summary=summary,
            exit_code=int(code),
        )
    raise typer.Exit(int(code))


def exit_with(code: int) -> None:
    """End the command with ``code`` (nothing when it is 0)."""
    if code:
        raise typer.Exit(code)


def command_app(**settings: object) -> typer.Typer:
    """The Typer app a command module registers its commands on."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, **settings)  # type: ignore[arg-type]
